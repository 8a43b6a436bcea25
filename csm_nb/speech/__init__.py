"""Speaking: segments (conversation turns), the context budget, streaming and the runaway
guard, the Generator, and the official demo's voice prompts."""
