"""Word lists and sentence templates of the toy corpus (all written for this project).

Why templates: toy mode needs thousands of short English sentences whose words recur often
enough for a 5-10 M-parameter CSM to learn how each one sounds, and a way to make sentences the
model has never heard from the same words (the held-out test) and sentences that differ from
a given one by exactly one word (the one-word test). A grammar of short templates over a few
hundred common words gives all three, with no copyrighted text.

A template is a string with {slot} fields. Each slot names a word class; two fields of the same
class are written {class}, {class:2} (the second draws a different word). Only content words
fill slots, so swapping one slot's word for another of its class changes exactly one content
word and keeps the sentence grammatical (no a/an: the templates use "the", "my", "this").
"""

from __future__ import annotations

# ---- word classes (content words; every class has >= 20 words so 19 one-word variants of
# ---- any sentence exist by swapping a single slot) ----------------------------------------

NAMES = ["Anna", "Ben", "Carl", "Dana", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack",
         "Kate", "Leo", "Mary", "Nick", "Olivia", "Paul", "Rose", "Sam", "Tom", "Vera",
         "Will", "Zoe", "Lucy", "Max", "Ruth", "Adam", "Nora", "Peter"]

NOUNS = ["dog", "cat", "bird", "horse", "book", "cup", "chair", "table", "door", "window",
         "car", "bus", "train", "boat", "ball", "box", "bag", "hat", "coat", "shoe", "key",
         "lamp", "phone", "clock", "bed", "cake", "apple", "bread", "egg", "letter", "pen",
         "map", "ticket", "tree", "flower", "song", "game", "picture", "plate", "spoon",
         "bottle", "basket", "candle", "kite", "rope", "ring", "shirt", "bike", "bell",
         "blanket", "drum", "piano", "ladder", "pillow", "radio", "jacket", "bucket", "wallet",
         "camera", "carpet", "sofa", "mirror", "guitar", "teapot", "parcel", "umbrella"]

PEOPLE = ["mother", "father", "sister", "brother", "friend", "uncle", "aunt", "teacher",
          "doctor", "neighbor", "cousin", "baker", "farmer", "driver", "nurse", "captain",
          "painter", "student", "grandmother", "grandfather", "singer", "pilot"]

ADJECTIVES = ["big", "small", "red", "blue", "green", "yellow", "old", "new", "warm", "cold",
              "soft", "loud", "quiet", "happy", "heavy", "light", "dark", "bright", "clean",
              "dirty", "long", "short", "round", "tall", "fast", "slow", "sweet", "empty",
              "full", "little", "brown", "white", "black", "pink", "strange", "lovely",
              "simple", "wooden", "funny", "tiny", "purple", "golden", "broken", "shiny",
              "cheap", "famous", "gentle", "noisy"]

PLACES = ["kitchen", "park", "school", "market", "station", "office", "garden", "library",
          "beach", "village", "city", "farm", "shop", "hospital", "church", "forest",
          "harbor", "museum", "bakery", "hotel", "cinema", "airport", "bank", "castle", "zoo",
          "garage", "hall", "island"]

# base form -> past tense (transitive verbs that take a thing)
VERBS = {"find": "found", "lose": "lost", "buy": "bought", "sell": "sold", "open": "opened",
         "close": "closed", "paint": "painted", "wash": "washed", "carry": "carried",
         "drop": "dropped", "clean": "cleaned", "fix": "fixed", "move": "moved",
         "take": "took", "bring": "brought", "keep": "kept", "break": "broke", "make": "made",
         "see": "saw", "need": "needed", "borrow": "borrowed", "hide": "hid", "hold": "held",
         "push": "pushed", "pull": "pulled", "fill": "filled", "check": "checked",
         "pick": "picked", "watch": "watched", "want": "wanted", "like": "liked",
         "send": "sent"}

TIMES = ["today", "tonight", "tomorrow", "yesterday", "soon", "later", "early", "again",
         "now", "twice", "once", "first", "quickly", "slowly", "carefully", "daily",
         "gladly", "often", "rarely", "always"]

NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
           "ninety", "hundred"]

PREPOSITIONS = ["on", "under", "near", "behind", "beside", "in"]   # function words: not swapped


def plural(noun: str) -> str:
    """Regular English plural (every noun in NOUNS is regular)."""
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


CLASSES: dict[str, list[str]] = {
    "name": NAMES,
    "noun": NOUNS,
    "nouns": [plural(n) for n in NOUNS],
    "person": PEOPLE,
    "adj": ADJECTIVES,
    "place": PLACES,
    "verb": list(VERBS),
    "verbed": list(VERBS.values()),
    "time": TIMES,
    "number": NUMBERS,
    "prep": PREPOSITIONS,
}

# Slot classes a one-word variant may change (a preposition is a function word).
CONTENT_CLASSES = frozenset(CLASSES) - {"prep"}

# Short templates: 4-9 words, about 1.5-3 s of espeak-ng speech, so a context turn plus a
# target line stay within a few hundred rows.
TEMPLATES = [
    "The {adj} {noun} is {prep} the {noun:2}.",
    "{name} {verbed} the {adj} {noun}.",
    "{name} {verbed} the {noun} at the {place}.",
    "My {person} {verbed} the {noun} {time}.",
    "Please {verb} the {adj} {noun}.",
    "Can you {verb} the {noun} {time}?",
    "We saw {number} {adj} {nouns} at the {place}.",
    "{name} and {name:2} went to the {place} {time}.",
    "Where is the {adj} {noun}?",
    "I will {verb} the {noun} for {name}.",
    "The {person} has the {adj} {noun}.",
    "There are {number} {nouns} {prep} the {noun}.",
    "Did {name} {verb} the {noun} {time}?",
    "The {place} is very {adj} {time}.",
    "{name} likes the {adj} {noun} from the {place}.",
    "This {noun} is {adj} and {adj:2}.",
    "Our {person} will {verb} {number} {nouns}.",
    "Why did the {person} {verb} my {noun}?",
    "{name} left the {noun} {prep} the {place}.",
    "That {adj} {person} lives near the {place}.",
]
