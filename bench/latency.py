"""Benchmark: CPU latency and peak memory of the teacher, a pruned, a mimic and a shared model.

    python bench/latency.py                                  # whisper-tiny.en, synth-commands
    python bench/latency.py --model random:wav2vec2 --train-clips 60 --clips 4   # quick check

The compressed models are built with the library, with short training (only their speed and
memory are measured here, not their accuracy; see bench/prune.py, mimic.py, share.py):

- pruned: `stackslim.prune.prune` (strategy `backward`, head re-fitted, `--threshold`) on
  `--train-clips` clips; its saved model (a plain Hugging Face folder) is timed.
- mimic: `stackslim.mimic.mimic` (1 linear mimic layer, z = 512, 2 + 2 epochs); its saved
  `MimicModel` (front end + mimic layer + head) is timed.
- shared: `stackslim.share.to_residual` (groups of 2 layers, rank 16, no recovery), saved
  (compact) and loaded back with `load_shared`; timed in its factored form (what is stored),
  and as `shared-dense`: the same loaded back and `materialize()`d to a plain dense encoder.

Latency: every model on the same `--clips` clips, batch 1 (the first clip) and batched (all),
round-robin over the models after a warm-up (`stackslim.evaluate.interleaved_latency`, built
on `models.latency.measure_latency`), median of `--repeats` rounds, ms per clip. Teacher,
pruned and shared run encoder + a head of the task's size; the mimic model its own head.
Peak memory: one fresh process per model loads it and runs the same clips at batch 1 and
batched; its VmHWM (`benchlib`), and the part above the process after its imports.
Whisper's log-mel runs through the feature extractor's torch STFT for every variant (as in
bench/mimic.py, `use_torch_mel`): its numpy one would dominate the small models' time.
The built models are kept in `--work` and reused by a rerun (`--rebuild` builds them again).
Writes bench/results/latency.json and bench/results/latency.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import benchlib  # noqa: E402

KINDS = ("teacher", "pruned", "mimic", "shared", "shared-dense")


def clip_indices(data: str, n: int) -> list[int]:
    """The same seeded clips in every process."""
    import numpy as np

    from stackslim.data import load_dataset

    ds = load_dataset(data)
    return sorted(np.random.default_rng(0).choice(len(ds), size=n, replace=False).tolist())


def load_variant(kind: str, model: str, path: str, classes: int):
    """(callable on a list of clips → logits, the loaded object) for one variant."""
    from stackslim.heads import ClassifierHead
    from stackslim.mimic import MimicModel
    from stackslim.models import load_encoder
    from stackslim.share import load_shared

    from mimic import use_torch_mel  # bench/mimic.py

    if kind == "mimic":
        m = MimicModel.load(path)
        use_torch_mel(m.front)
        return m, m
    enc = {"teacher": lambda: load_encoder(model), "pruned": lambda: load_encoder(path),
           "shared": lambda: load_shared(path),
           "shared-dense": lambda: load_shared(path).materialize()}[kind]()
    use_torch_mel(getattr(enc, "inner", enc))  # a SharedEncoder wraps the family adapter
    head = ClassifierHead(enc.hidden_size, classes).eval()  # timing only: the task's size
    return (lambda waves: head(*enc.encode(waves))), enc


def build(a, work: Path) -> dict:
    """Train/convert the three compressed models into `work` (or reuse them); what was built."""
    done = work / "built.json"
    if done.is_file() and not a.rebuild:
        built = json.loads(done.read_text())
        if built.get("inputs") == [a.model, a.data, a.train_clips, a.threshold]:
            return built
    from dataclasses import replace

    from stackslim import mimic, prune
    from stackslim.models import load_encoder
    from stackslim.share import to_residual

    pr = prune.run(a.model, a.data, work / "prune", prune.PruneConfig(
        strategies=("backward",), threshold=a.threshold, max_clips=a.train_clips,
        train=replace(prune.PruneConfig().train, epochs=20), refit_epochs=10), progress=False)
    mi = mimic.run(a.model, a.data, work / "mimic", mimic.MimicConfig(
        kind="linear", layers=1, hidden=512, train=replace(mimic.MimicConfig().train, epochs=2),
        task_epochs=2, head_epochs=10, max_clips=a.train_clips, latency_repeats=1, latency_batch=1),
        progress=False)
    shared = to_residual(load_encoder(a.model), groups=2, rank=16)
    shared.save(work / "shared")
    built = {"pruned": {"path": str(work / "prune" / "model"), "deleted_layers": pr.best["deleted_layers"],
                       "num_layers": pr.best["num_layers"], "strategy": pr.best["strategy"],
                       "variant": pr.best["variant"], "test_accuracy": pr.best["test_accuracy"],
                       "teacher_test_accuracy": pr.teacher.test_accuracy},
            "mimic": {"path": str(mi.model_dir), "test_accuracy": mi.mimic["accuracy"],
                      "teacher_test_accuracy": mi.teacher["accuracy"]},
            "shared": {"path": str(work / "shared"), "groups": shared.groups, "rank": 16,
                       "recovered": False},
            "classes": pr.task["classes"], "inputs": [a.model, a.data, a.train_clips, a.threshold]}
    done.write_text(json.dumps(built, indent=2))
    return built


def sizes(kind: str, obj, path: str | None) -> dict:
    """Unique parameters and bytes on disk of a loaded variant."""
    import tempfile

    from stackslim.evaluate.latency import bytes_on_disk, count_params

    if kind in ("teacher", "shared-dense"):  # not stored as such: saved here to be measured
        with tempfile.TemporaryDirectory() as tmp:
            obj.save(Path(tmp) / "m")
            return {"params": obj.num_params(), "bytes": bytes_on_disk(Path(tmp) / "m")}
    params = count_params(obj) if kind == "mimic" else obj.num_params()
    return {"params": params, "bytes": bytes_on_disk(path)}


def child(kind: str, model: str, path: str, data: str, clips: int, classes: int, threads: int) -> dict:
    """Peak memory of one variant answering the clips, in this fresh process."""
    import torch

    benchlib.set_threads(threads)
    from stackslim.data import load_dataset

    ds = load_dataset(data)
    waves = [ds.load(i) for i in clip_indices(data, clips)]
    # the model classes transformers imports lazily, so that rss0 holds every import
    from transformers import (Data2VecAudioModel, HubertModel, Wav2Vec2Model,  # noqa: F401
                              WavLMModel, WhisperForConditionalGeneration)

    from stackslim import mimic, prune, share  # noqa: F401
    rss0 = benchlib.proc_status_mib("VmRSS")
    fn, _ = load_variant(kind, model, path, classes)
    with torch.inference_mode():
        for _ in range(2):
            fn(waves[:1])
            fn(waves)
    return {"peak_rss_mib": benchlib.proc_status_mib("VmHWM"), "rss_before_model_mib": rss0}


def markdown(doc: dict) -> str:
    inp, b = doc["inputs"], doc["built"]
    lines = ["# latency: teacher, pruned, mimic and shared models on the CPU\n",
             f"`{doc['command']}`  ",
             f"Model {inp['model']}, {inp['clips']} clips of {inp['data']} (batched = all of them), "
             f"torch threads {inp['threads']}, {inp['repeats']} interleaved rounds (median). Machine: "
             f"{doc['machine']['cpu']}, {doc['machine']['cpus']} cores, load average "
             f"{doc['machine']['load_avg_1m_at_start']} at start (shared with other jobs: compare "
             "within this table).\n",
             "| variant | layers | params | bytes on disk | ms/clip batch 1 | ms/clip batched | "
             "speed-up (batch 1) | peak RSS (MiB) | above imports (MiB) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        lines.append(f"| {r['variant']} | {r['layers']} | {r['params']:,} | {r['bytes']:,} | "
                     f"{r['batch1_ms']:.1f} | {r['batched_ms']:.1f} | {r['speedup']:.1f}× | "
                     f"{r['peak_rss_mib']:.0f} | {r['model_rss_mib']:.0f} |")
    p = b["pruned"]
    lines += ["", "Built with short training, for speed and memory only (accuracies on the test "
              f"split of {inp['train_clips']} clips, for the record): pruned = `prune` strategy "
              f"{p['strategy']} ({p['variant']}) at threshold {inp['threshold']}, layers "
              f"{p['deleted_layers']} deleted, accuracy {p['test_accuracy']:.3f} (teacher "
              f"{p['teacher_test_accuracy']:.3f}); mimic = `mimic` 1 linear layer z = 512, 2 + 2 "
              f"epochs, accuracy {b['mimic']['test_accuracy']:.3f} (teacher "
              f"{b['mimic']['teacher_test_accuracy']:.3f}); shared = `to_residual` groups "
              f"{b['shared']['groups']}, rank 16, not recovered (its outputs are not the "
              "teacher's; timing only); shared-dense = the shared model materialised to a plain "
              "dense encoder after loading (bytes: saved dense).", "",
              "Peak RSS: VmHWM of a fresh process that loads the variant and runs the clips; "
              "'above imports' subtracts that process's RSS before loading the model (Python, "
              "torch, transformers and its model classes, the data set index and the clips). A "
              "Whisper teacher, pruned or shared model is loaded with its decoder (the saved "
              "folders keep it so that they still transcribe); the mimic model holds no decoder.", "",
              f"Rerun: `{doc['command']}` (about 10 minutes here, models built; 4 minutes when reused).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="whisper-tiny.en")
    p.add_argument("--data", default="synth-commands")
    p.add_argument("--train-clips", type=int, default=300, help="clips for the quick training")
    p.add_argument("--threshold", type=float, default=0.9, help="prune: capacity threshold")
    p.add_argument("--clips", type=int, default=8, help="clips timed (batched = all)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the cores here are shared)")
    p.add_argument("--work", default=str(Path.home() / ".cache" / "stackslim" / "bench" / "latency"))
    p.add_argument("--rebuild", action="store_true", help="build the models again")
    p.add_argument("--child", nargs=3, metavar=("KIND", "PATH", "CLASSES"), help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    import torch

    benchlib.set_threads(a.threads)
    if a.child:
        res = child(a.child[0], a.model, a.child[1], a.data, a.clips, int(a.child[2]), a.threads)
        Path(a.json).write_text(json.dumps(res))
        return 0
    from stackslim.data import load_dataset
    from stackslim.evaluate.latency import interleaved_latency

    command = "python bench/latency.py" + "".join(
        f" --{k.replace('_', '-')} {getattr(a, k)}" for k in ("model", "data", "train_clips", "threshold",
                                                              "clips", "repeats", "threads")
        if getattr(a, k) != p.get_default(k))
    machine = benchlib.machine()
    work = Path(a.work) / a.model.replace(":", "-")
    built = build(a, work)
    ds = load_dataset(a.data)
    waves = [ds.load(i) for i in clip_indices(a.data, a.clips)]
    paths = {"teacher": a.model, "pruned": built["pruned"]["path"], "mimic": built["mimic"]["path"],
             "shared": built["shared"]["path"], "shared-dense": built["shared"]["path"]}
    loaded = {k: load_variant(k, a.model, paths[k], built["classes"]) for k in KINDS}
    lat = interleaved_latency({k: fn for k, (fn, _) in loaded.items()}, waves, repeats=a.repeats)
    rows = []
    for k in KINDS:
        obj = loaded[k][1]
        mem = benchlib.run_child(Path(__file__), [k, paths[k], str(built["classes"]), "--model", a.model,
                                                  "--data", a.data, "--clips", str(a.clips),
                                                  "--threads", str(a.threads)], a.threads)
        layers = len(obj.layers) if k == "mimic" else obj.num_layers
        rows.append({"variant": k, "layers": layers, **sizes(k, obj, None if k == "teacher" else paths[k]),
                     **lat[k], "speedup": lat["teacher"]["batch1_ms"] / lat[k]["batch1_ms"],
                     "peak_rss_mib": mem["peak_rss_mib"],
                     "model_rss_mib": mem["peak_rss_mib"] - mem["rss_before_model_mib"]})
        print(f"{k:>8}: {rows[-1]['batch1_ms']:.1f} ms/clip (batch 1), {rows[-1]['batched_ms']:.1f} "
              f"(batched), peak {mem['peak_rss_mib']:.0f} MiB", flush=True)
    doc = {"command": command, "machine": machine,
           "inputs": {"model": a.model, "data": a.data, "clips": len(waves), "train_clips": a.train_clips,
                      "threshold": a.threshold, "repeats": a.repeats, "threads": a.threads},
           "units": {"batch1_ms": "median ms per clip at batch 1", "batched_ms": "median ms per clip, "
                     "all clips in one batch", "peak_rss_mib": "VmHWM of a fresh process, MiB",
                     "model_rss_mib": "peak minus RSS before loading the model, MiB",
                     "bytes": "bytes on disk of the saved variant", "params": "unique parameters"},
           "built": built, "rows": rows}
    js, md = benchlib.write_results("latency", doc, markdown(doc))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
