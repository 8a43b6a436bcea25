"""What notebook 04 relies on: its exercise checkers (the bandwidth floor, the official loop's
host syncs, time to first audio; a wrong answer points to the hint, then the answer), its
figures (headless, the launch timeline's schedule too), and the notebook's own layout."""

import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

import csm_nb
from csm_nb.teach import fast as lesson
from csm_nb.core.profiling import weight_bytes_per_frame

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_fast_generation.ipynb"


def verdict(capsys, ok, check, *args, **kwargs):
    """Run a checker, assert its return value, return what it printed. A wrong answer must end
    with the pointer to the exercise's hint, then (after it) to its worked answer."""
    assert check(*args, **kwargs) is ok
    out = capsys.readouterr().out
    if ok is False:
        assert_stuck_pointer(out, check.__name__.removeprefix("check_"))
    return out


def assert_stuck_pointer(out, name):
    hint, answer = f"lesson.hint({name!r})", f"lesson.solution({name!r})"
    assert out.startswith("Not yet.") and hint in out and answer in out, out
    assert out.index(hint) < out.index(answer)


def assert_renders(fig):
    assert isinstance(fig, Figure)
    assert fig._repr_png_().startswith(b"\x89PNG")


# ------------------------------------------------------------------ parameter arithmetic

def test_llama_params_count_the_modules_parameters():
    model = csm_nb.tiny_model(device="cpu")
    for transformer, cfg in ((model.backbone, model.config.backbone),
                             (model.decoder, model.config.decoder)):
        assert lesson.llama_params(cfg) == sum(p.numel() for p in transformer.parameters())


def test_params_per_frame_golden_and_equal_to_profiling():
    assert lesson.params_per_frame() == 4_553_371_648       # docs/csm-reference.md sec. 10: 4.553 G
    model = csm_nb.tiny_model(device="cpu")                 # fp32: 4 bytes per parameter
    assert lesson.params_per_frame(model.config) * 4 == weight_bytes_per_frame(model)


def test_official_host_syncs_golden():
    assert lesson.official_host_syncs() == 145              # 16 + 31 x 4 + 4 + 1
    assert lesson.official_host_syncs(csm_nb.CSMConfig.tiny()) == 2 + 31 * 2 + 2 + 1


@pytest.mark.parametrize("backbone_layers, decoder_layers", [(2, 2), (1, 3)])
def test_official_host_syncs_match_the_official_loop_counted(backbone_layers, decoder_layers):
    """The formula the exercise checks equals the syncs counted in the official loop (torchtune)
    per frame, for decoders of other depths too (the reset reads one .item() per layer)."""
    pytest.importorskip("torchtune")
    from csm_nb.core.profiling import OpCounter
    from csm_nb.reference.official import OfficialCSM
    base = csm_nb.CSMConfig.tiny()
    cfg = lesson.csm_with_layers(backbone_layers, decoder_layers, base)
    torch.manual_seed(0)
    ref = OfficialCSM(cfg).eval()
    ref.setup_caches(1)
    tokens = torch.zeros(4, cfg.num_codebooks + 1, dtype=torch.long)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    tokens[:, -1], mask[:, -1] = torch.tensor([128_000, 72, 105, 128_001]), True
    counted = []
    for frames in (1, 3):
        with OpCounter() as ops:
            codes = ref.generate(tokens, mask, frames, topk=1)
        assert codes.shape[1] == frames                   # random weights: no stop frame
        counted.append(ops.syncs)
    assert (counted[1] - counted[0]) / 2 == lesson.official_host_syncs(cfg)


# ------------------------------------------------------------------ checkers

@pytest.mark.parametrize("check", [lesson.check_floor_ms, lesson.check_host_syncs,
                                   lesson.check_first_audio_ms])
@pytest.mark.parametrize("blank", [None, ...])
def test_blanks_are_not_answered_yet(capsys, check, blank):
    assert "Not answered yet" in verdict(capsys, None, check, blank)


@pytest.mark.parametrize("check", [lesson.check_floor_ms, lesson.check_host_syncs,
                                   lesson.check_first_audio_ms])
def test_wrong_kinds_raise(check):
    for wrong_kind in ("28.5", [28.5], True):
        with pytest.raises(TypeError):
            check(wrong_kind)


def test_floor_ms(capsys):
    weights_only = 4_553_371_648 * 2 / 300e9 * 1000          # L4: 30.36 ms
    assert "30.4 ms" in verdict(capsys, True, lesson.check_floor_ms, weights_only)
    verdict(capsys, True, lesson.check_floor_ms, 30.6)       # with the 67 MB KV cache
    verdict(capsys, True, lesson.check_floor_ms, torch.tensor(30.4))
    verdict(capsys, True, lesson.check_floor_ms, 28.7, bandwidth_gb_s=320)  # T4, as the doc
    verdict(capsys, True, lesson.check_floor_ms, 2.72, bandwidth_gb_s=3350)  # H100
    assert "seconds" in verdict(capsys, False, lesson.check_floor_ms, weights_only / 1000)
    assert "2 bytes" in verdict(capsys, False, lesson.check_floor_ms, weights_only / 2)
    assert "not 4" in verdict(capsys, False, lesson.check_floor_ms, weights_only * 2)
    assert "bits" in verdict(capsys, False, lesson.check_floor_ms, weights_only * 8)
    decoder_once = sum(lesson._frame_params(csm_nb.CSMConfig.csm_1b())) * 2 / 300e9 * 1000
    assert "31" in verdict(capsys, False, lesson.check_floor_ms, decoder_once)
    assert "add the parameters" in verdict(capsys, False, lesson.check_floor_ms, 1.0)


def test_floor_ms_of_the_notebooks_16_codebook_csm(capsys):
    """The notebook asks for a CSM that no line of its table can be scaled to: CSM-1B's layers
    with 16 codebooks (15 depth steps) on an L4."""
    csm_16 = lesson.csm_with_codebooks(16)
    assert (csm_16.num_codebooks, csm_16.backbone, csm_16.decoder) == (
        16, lesson.CSM_1B.backbone, lesson.CSM_1B.decoder)
    assert lesson.params_per_frame(csm_16) == 977_346_560 + 15 * 115_355_648
    right = lesson.params_per_frame(csm_16) * 2 / 300e9 * 1000           # 18.05 ms
    out = verdict(capsys, True, lesson.check_floor_ms, right, config=csm_16)
    assert "18.1 ms" in out and "30.4 ms" in out and "read once" in out
    verdict(capsys, True, lesson.check_floor_ms, 18.3, config=csm_16)     # with the KV cache
    table_t4 = 28.67 * 320 / 300                 # the T4 line scaled to an L4: CSM-1B's floor
    assert "32 codebooks" in verdict(capsys, False, lesson.check_floor_ms, table_t4,
                                     config=csm_16)
    assert "read once per frame whatever" in verdict(capsys, False, lesson.check_floor_ms,
                                                     30.36 / 2, config=csm_16)
    decoder_once = (977_346_560 + 115_355_648) * 2 / 300e9 * 1000
    assert "runs once per codebook 1..15" in verdict(capsys, False, lesson.check_floor_ms,
                                                     decoder_once, config=csm_16)
    assert "seconds" in verdict(capsys, False, lesson.check_floor_ms, right / 1000,
                                config=csm_16)
    assert "2 bytes" in verdict(capsys, False, lesson.check_floor_ms, right / 2, config=csm_16)
    with pytest.raises(ValueError, match="num_codebooks"):
        lesson.csm_with_codebooks(1)
    with pytest.raises(ValueError, match="num_codebooks"):
        lesson.csm_with_codebooks(16.5)


def test_host_syncs(capsys):
    assert "145" in verdict(capsys, True, lesson.check_host_syncs, 145)
    verdict(capsys, True, lesson.check_host_syncs, 67, config=csm_nb.CSMConfig.tiny())
    base = csm_nb.CSMConfig.csm_1b()
    bigger = replace(base, backbone=replace(base.backbone, num_layers=28),
                     decoder=replace(base.decoder, num_layers=8))
    verdict(capsys, True, lesson.check_host_syncs, 285, config=bigger)
    assert "once per codebook" in verdict(capsys, False, lesson.check_host_syncs, 28 + 8 + 9,
                                          config=bigger)
    assert "not CSM-1B's 4" in verdict(capsys, False, lesson.check_host_syncs, 281,
                                       config=bigger)
    assert "reset" in verdict(capsys, False, lesson.check_host_syncs, 140)
    assert "once per codebook" in verdict(capsys, False, lesson.check_host_syncs, 16 + 4 + 5)
    assert "K - 1" in verdict(capsys, False, lesson.check_host_syncs, 16 + 32 * 4 + 5)
    assert "csm_nb" in verdict(capsys, False, lesson.check_host_syncs, 1)
    assert "count one sync" in verdict(capsys, False, lesson.check_host_syncs, 77)


def test_first_audio_ms(capsys):
    assert "44 ms" in verdict(capsys, True, lesson.check_first_audio_ms, 44)
    verdict(capsys, True, lesson.check_first_audio_ms, 26, chunk_frames=1)
    assert "prefill" in verdict(capsys, False, lesson.check_first_audio_ms, 29)
    assert "decode" in verdict(capsys, False, lesson.check_first_audio_ms, 39)
    assert "all of its 4" in verdict(capsys, False, lesson.check_first_audio_ms, 26)
    assert "how much audio" in verdict(capsys, False, lesson.check_first_audio_ms, 340)
    assert "add the prefill" in verdict(capsys, False, lesson.check_first_audio_ms, 3)


@pytest.mark.parametrize("name", ["floor_ms", "host_syncs", "first_audio_ms"])
def test_solutions_exist(capsys, name):
    lesson.solution(name)
    assert capsys.readouterr().out.strip()


# ------------------------------------------------------------------ figures

def test_op_counts_colours_kernels_views_and_syncs():
    counts = Counter({"aten::linear": 480, "aten::view": 192, "aten::_local_scalar_dense": 1,
                      "aten::mul": 193})
    fig = lesson.plot_op_counts(counts, top=3)
    bars = fig.axes[0].patches
    assert len(bars) == 3                                    # only the top 3, smallest first
    assert [b.get_width() for b in bars] == [192, 193, 480]
    colours = [b.get_facecolor() for b in bars]              # view, kernel, kernel
    assert colours[0] == to_rgba(lesson._VIEW_COLOUR) and colours[1] == colours[2] == to_rgba(
        lesson._KERNEL_COLOUR)
    assert_renders(fig)
    sync = lesson.plot_op_counts({"aten::_local_scalar_dense": 2, "aten::mm": 5}).axes[0].patches
    assert sync[0].get_facecolor() == to_rgba(lesson._SYNC_COLOUR)


def test_frame_parts_with_and_without_times():
    kernels = {"backbone": 57, "depth decoder": 1488, "sampling": 197}
    assert len(lesson.plot_frame_parts(kernels).axes) == 1
    fig = lesson.plot_frame_parts(kernels, {"backbone": 2.0, "depth decoder": 70.0,
                                            "sampling": 8.0}, frame_ms=85.0)
    assert len(fig.axes) == 2
    assert sorted(b.get_width() for b in fig.axes[1].patches) == [2.0, 8.0, 70.0]
    assert_renders(fig)


def test_bytes_per_frame_shares():
    fig = lesson.plot_bytes_per_frame({"backbone": 3e9, "decoder": 1e9})
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "3.00 GB (75.0 %)" in texts and "1.00 GB (25.0 %)" in texts
    assert "4.00 GB" in fig.axes[0].get_title()
    assert_renders(fig)


def test_ms_per_frame_colours_by_real_time_and_highlight():
    fig = lesson.plot_ms_per_frame({"fast": 10.0, "slow": 200.0, "here": 50.0}, 80.0,
                                   highlight=["here"], log=True, title="t")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    colours = {label.get_text(): bar.get_facecolor()
               for label, bar in zip(ax.get_yticklabels(), ax.patches)}
    assert len(set(colours.values())) == 3                   # green, red, orange
    texts = [t.get_text() for t in ax.texts]
    assert "200 ms (RTF 2.5)" in texts and "10 ms (RTF 0.125)" in texts
    assert_renders(fig)


def test_context_batch_and_chunk_figures():
    assert_renders(lesson.plot_context_scaling([57, 500, 1000], [100, 101, 102], [150, 300, 500]))
    assert len(lesson.plot_context_scaling([57, 500], [1, 2]).axes) == 1
    fig = lesson.plot_batch_throughput([1, 2, 4], [100.0, 100.0, 100.0], 80.0)
    measured, perfect = fig.axes[1].lines[:2]
    assert list(measured.get_ydata()) == [10.0, 20.0, 40.0]  # flat step time: linear gain
    assert list(perfect.get_ydata()) == [10.0, 20.0, 40.0]
    assert_renders(fig)
    fig = lesson.plot_chunk_latency([1, 2, 4], [0.2, 0.4, 0.9], 80.0)
    heights = [b.get_height() for b in fig.axes[0].patches]
    assert heights == pytest.approx([200, 400, 900, 80, 160, 320])
    assert_renders(fig)


def test_launch_schedule_syncs_leave_the_gpu_idle():
    ways = lesson.launch_schedule(kernels=12, launch_cost=1.0, kernel_cost=1.5, sync_every=2)
    assert list(ways) == ["eager", "sync", "graph"]
    for row in ways.values():
        assert len(row["gpu"]) == 12
        busy = sum(width for _, width in row["gpu"])
        idle = sum(width for _, width in row["idle"])
        assert busy + idle == pytest.approx(row["end"])        # the lane is kernels or gaps
        assert row["gpu_busy"] == pytest.approx(busy / row["end"])
        starts = [start for start, _ in row["gpu"]]
        assert starts == sorted(starts)
    eager, sync, graph = ways["eager"], ways["sync"], ways["graph"]
    assert len(eager["cpu"]) == len(sync["cpu"]) == 12 and len(graph["cpu"]) == 1
    assert eager["wait"] == graph["wait"] == [] and len(sync["wait"]) == 6
    assert sync["gpu_busy"] < min(eager["gpu_busy"], graph["gpu_busy"])
    assert len(sync["idle"]) > len(eager["idle"]) == len(graph["idle"]) == 1   # only the start
    # kernels shorter than their launches: the graph still keeps the GPU busier than eager
    short = lesson.launch_schedule(kernel_cost=0.5)
    assert short["graph"]["gpu_busy"] > short["eager"]["gpu_busy"] > short["sync"]["gpu_busy"]
    with pytest.raises(ValueError):
        lesson.launch_schedule(sync_every=0)


def test_launch_timeline_figure():
    fig = lesson.plot_launch_timeline()
    assert len(fig.axes) == 3
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert [t[:3] for t in titles] == ["(a)", "(b)", "(c)"]
    assert "schematic" in fig.get_suptitle().lower()
    assert fig.axes[-1].get_xlabel() == "time (illustrative units)"
    ways = lesson.launch_schedule()
    for ax, row in zip(fig.axes, ways.values()):
        assert [t.get_text() for t in ax.get_yticklabels()] == ["GPU", "CPU"]
        assert f"GPU busy {row['gpu_busy']:.0%}" in ax.get_title(loc="left")
        bars = {c.get_label(): c for c in ax.collections}
        assert len(bars["GPU runs a kernel"].get_paths()) == 12
        assert len(bars["CPU waits (host sync)"].get_paths()) == len(row["wait"])
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["CPU launches a kernel", "CPU waits (host sync)", "GPU runs a kernel",
                      "GPU idle"]
    assert_renders(fig)


# ------------------------------------------------------------------ the notebook itself

@pytest.fixture(scope="module")
def notebook():
    return json.loads(NOTEBOOK.read_text())


def test_notebook_is_stored_without_outputs(notebook):
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_notebook_opening_cells(notebook):
    first, install, mode = notebook["cells"][:3]
    assert ("https://colab.research.google.com/github/csm-notebooks/csm-notebooks/blob/main/"
            "notebooks/04_fast_generation.ipynb") in "".join(first["source"])
    assert install["metadata"]["tags"] == ["skip-execution"]
    source = "".join(install["source"])
    assert 'if "google.colab" in sys.modules:' in source and "moshi==0.2.13" in source
    for forbidden in ("torch", "torchaudio", "numpy", "transformers", "huggingface_hub"):
        assert not re.search(rf'"{forbidden}[=<>"]', source)
    assert "import csm_nb" in "".join(mode["source"])
    assert "MODE = csm_nb.notebook_mode()" in "".join(mode["source"])


def test_notebook_calls_only_what_exists(notebook):
    code = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    names = re.findall(r"lesson\.(\w+)\(", code)
    assert names
    for name in names:
        assert callable(getattr(lesson, name, None)), name


def test_the_intro_lists_the_sections_in_order(notebook):
    """The intro's numbered list is the numbered sections after the setup (section 0)."""
    sources = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown"]
    sections = sorted(int(n) for s in sources for n in re.findall(r"^## (\d+)\. ", s, flags=re.M))
    intro = [int(n) for n in re.findall(r"^(\d+)\. ", sources[0], flags=re.M)]
    assert sections[0] == 0 and "section 0" in sources[0]
    assert intro == sections[1:] == list(range(1, len(sections)))


def test_the_floor_exercise_is_not_in_the_table(notebook):
    """Your turn 1 asks for a GPU and a model that no line of the floor table can be scaled to."""
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    table = next("".join(c["source"]) for c in code if "GPU_GB_S = {" in "".join(c["source"]))
    floor = next("".join(c["source"]) for c in code
                 if c["metadata"].get("exercise") == "fast.floor_ms")
    assert "L4" not in table
    assert "lesson.csm_with_codebooks(16)" in floor and "config=csm_16" in floor
