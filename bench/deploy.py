"""Benchmark: what a device runs. whisper-base variants in PyTorch, onnxruntime float and int8.

    python bench/deploy.py                   # whisper-base, every variant (about 40 min)
    python bench/deploy.py --variants teacher shared --wer-clips 10   # fewer rows
    python bench/deploy.py --model random:whisper --seconds 1 --repeats 2 --wer-clips 0 --kws-clips 16
    python bench/deploy.py --from-study runs/study   # the variants a default study trained

Variants, built once into ``--work`` with the library (reused by a rerun), with the study's
settings (`stackslim.study.pipeline.method_configs(StudyConfig())`: synth-commands, word task,
1,500 clips, seed 0), or taken from a finished study's run folder (``--from-study DIR``: its
``share-K3-r16``, ``mimic-linear-1-512`` and ``mimic-transformer-1-512`` steps, linked, not
copied), so that the rows are the very models the study's report shows:

- ``teacher``: the bundled whisper-base (a plain Hugging Face folder);
- ``pruned``: the teacher without its 5th layer (`Encoder.without_layers`, saved);
- ``shared``: `stackslim.share.run` K3-r16 (groups of 3 layers, rank 16, aware init, recovery
  as the study runs it), its compact folder holding the encoder only;
- ``mimic-linear``, ``mimic-transformer``: `stackslim.mimic.run` linear-1-512 and
  transformer-1-512 (their folders hold the front end, the mimic layers and their head).

Each is exported with `stackslim.export.run` (ONNX + int8; its parity lands in the rows).
Then every (variant, runtime) pair runs in a fresh process, one thread:

- speed and memory: load the model, run the encoder on Whisper log-mel features of
  `--seconds` s noise clips (stackslim's unpadded mode, features prepared before timing) at
  batch 1 and batch 8, median of `--repeats` runs after a warm-up. PyTorch runs the library's
  traceable forward (`export.graphs`, what was exported). Peak memory above imports: VmHWM
  after loading and running minus VmHWM once the libraries are imported *and* warmed (the
  model family's modules imported, one tiny op of each kind run: the libraries' lazily loaded
  code is theirs, not the model's); its parts: file-backed pages (the memory-mapped weights
  the forward read, and code; ``weights_file_mib``: the pages of the model's own files) and
  anonymous memory (activations, allocator) at the end.
- quality, after that (in the same process): KWS accuracy on the synth-commands test split
  of the study's task (the teacher's head, fitted here on the teacher's states as `share`
  fits it, on the last state of teacher, pruned and shared; the mimic models' own heads),
  and for the Whisper variants WER on `--wer-clips` eval clips of synth-sentences, each
  padded with silence to Whisper's 30 s window (`evaluate.wer.pad_silence`), the encoder
  run by the row's runtime and the original decoder transcribing greedily
  (`models.transcribe.transcribe`), as `evaluate.wer.whisper_wer` does.

The ONNX files hold the encoder only. Writes bench/results/deploy.json and deploy.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import benchlib  # noqa: E402

VARIANTS = ("teacher", "pruned", "shared", "mimic-linear", "mimic-transformer")
RUNTIMES = ("pytorch", "onnxruntime", "onnxruntime-int8")
DATA, TASK, WER_DATA = "synth-commands", "word", "synth-sentences"
STUDY_SPEC = {"shared": "share-K3-r16", "mimic-linear": "mimic-linear-1-512",
              "mimic-transformer": "mimic-transformer-1-512"}


SHARED_SVD = False  # --shared svd: `to_residual` K3-r16 svd init, no recovery (quick; speed and
# memory do not depend on the values, accuracy and WER do)


def folder(work: Path, variant: str) -> Path:
    """The model folder of `variant` (a method run keeps its model under run/model)."""
    if variant == "shared" and SHARED_SVD:
        return work / "shared"
    return work / f"{variant}-run" / "model" if variant in STUDY_SPEC else work / variant


def link_study(study: Path, work: Path, variants) -> None:
    """Point the shared and mimic variants' run folders at a finished study's steps."""
    for v in variants:
        if v not in STUDY_SPEC or SHARED_SVD and v == "shared":
            continue
        src = (study / STUDY_SPEC[v]).resolve()
        if not (src / "model").is_dir():
            sys.exit(f"--from-study {study}: no {STUDY_SPEC[v]}/model (has the study finished?)")
        dst = work / f"{v}-run"
        if dst.is_symlink() or dst.exists():
            if dst.is_symlink() and dst.resolve() == src:
                continue
            sys.exit(f"--from-study: {dst} already holds a {v} model; give another --work")
        work.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src, target_is_directory=True)


def study_task():
    from stackslim.heads import prepare_task
    from stackslim.study.config import StudyConfig

    cfg = StudyConfig()
    return prepare_task(DATA, TASK, seed=cfg.seed, max_clips=cfg.max_clips)


def build(model: str, work: Path, variants) -> None:
    """Model folders, the teacher's head and the ONNX exports; existing ones are reused."""
    from stackslim import mimic, share
    from stackslim.export import ExportConfig, run
    from stackslim.models import load_encoder
    from stackslim.study.config import StudyConfig
    from stackslim.study.pipeline import method_configs

    work.mkdir(parents=True, exist_ok=True)
    enc = load_encoder(model)
    cfgs = method_configs(StudyConfig(), whisper=enc.family == "whisper")  # as the study resolves it
    for v in variants:
        path = folder(work, v)
        if not path.is_dir():
            if v == "teacher":
                enc.save(path)
            elif v == "pruned":
                enc.without_layers([min(4, enc.num_layers - 1)]).save(path)
            elif v == "shared" and SHARED_SVD:
                from stackslim.share import to_residual

                to_residual(enc, groups=3, rank=16).save(path, decoder=False)
            elif v == "shared":  # each method loads its own teacher from `model`
                share.run(model, DATA, path.parent, cfgs[STUDY_SPEC[v]], progress=False, force=True)
            else:
                mimic.run(model, DATA, path.parent, cfgs[STUDY_SPEC[v]], progress=False, force=True)
            print("built", v, flush=True)
        if not (work / f"{v}-onnx" / "export.json").is_file():
            run(path, work / f"{v}-onnx", ExportConfig(format="onnx", int8=True, parity_clips=2))
    if not (work / "head" / "head.json").is_file():
        teacher_head(enc, work / "head")


def teacher_head(enc, out: Path) -> None:
    """The teacher's head on the study's task, fitted on its last states as `share` fits it."""
    from stackslim.heads import fit_head
    from stackslim.prune import save_head
    from stackslim.share.config import ShareConfig
    from stackslim.train import TrainConfig

    task = study_task()
    caches = {p: task.cache(enc, p, progress=False) for p in ("train", "validation")}
    head, _ = fit_head(caches["train"], task.y("train"), caches["validation"], task.y("validation"),
                       task.num_classes, TrainConfig(epochs=ShareConfig().head_epochs, seed=0),
                       progress=False)
    out.mkdir(parents=True, exist_ok=True)
    save_head(head, out, {"task": TASK, "data": DATA, "fitted_on": "teacher last states, train split"})


def warm_base(family: str) -> float:
    """VmHWM (MiB) once the libraries a row uses are imported and have run one tiny op each."""
    import numpy as np
    import onnxruntime  # noqa: F401
    import torch
    import torch.nn.functional as F
    import transformers.models.whisper.modeling_whisper  # noqa: F401

    import stackslim.mimic.model  # noqa: F401
    import stackslim.share.load  # noqa: F401

    with torch.inference_mode():  # BLAS, conv, norm, softmax, GELU code pages
        a = torch.randn(16, 16)
        F.layer_norm(F.gelu(a @ a).softmax(-1), (16,))
        F.conv1d(torch.randn(1, 4, 8), torch.randn(4, 4, 3))
    np.fft.rfft(np.zeros(400))
    return benchlib.proc_status_mib("VmHWM")


def child(variant: str, runtime: str, work: Path, args) -> dict:
    """One row in this (fresh) process: speed and memory, then quality."""
    import numpy as np
    import torch

    from stackslim.export.graphs import EncoderGraph, MimicGraph
    from stackslim.export.onnx import graph_inputs, session
    from stackslim.export.pipeline import load_model

    torch.set_num_threads(1)
    base = warm_base("whisper")
    file0, anon0 = benchlib.proc_status_mib("RssFile"), benchlib.proc_status_mib("RssAnon")
    t0 = time.perf_counter()
    loaded = load_model(folder(work, variant), decoder=False)  # the encoder's memory; WER reads the teacher's decoder
    if runtime == "pytorch":
        graph = (MimicGraph(loaded.model) if loaded.kind == "mimic" else EncoderGraph(loaded.model)).eval()
        run = lambda x, n: [t.numpy() for t in graph(x, n)]  # noqa: E731
    else:
        onnx = work / f"{variant}-onnx" / ("model.int8.onnx" if runtime.endswith("int8") else "model.onnx")
        sess = session(onnx, threads=1)
        run = lambda x, n: sess.run(None, {"features": x.numpy(), "lengths": n.numpy()})  # noqa: E731
    load_s = time.perf_counter() - t0
    enc = loaded.encoder
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(16000 * args.seconds))).astype(np.float32) for _ in range(8)]
    out = {"variant": variant, "runtime": runtime, "load_s": round(load_s, 3),
           "load_mib": round(benchlib.proc_status_mib("VmHWM") - base, 1)}
    with torch.inference_mode():
        for B in (1, 8):
            x, n = graph_inputs(enc, clips[:B])
            run(x, n)  # warm-up
            ts = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                run(x, n)
                ts.append((time.perf_counter() - t) * 1000)
            out[f"batch{B}_ms"] = round(statistics.median(ts), 2)
            if B == 1:
                out["peak_mib_batch1"] = round(benchlib.proc_status_mib("VmHWM") - base, 1)
    out["peak_mib_above_imports"] = round(benchlib.proc_status_mib("VmHWM") - base, 1)
    out["file_mib"] = round(benchlib.proc_status_mib("RssFile") - file0, 1)
    out["anon_mib"] = round(benchlib.proc_status_mib("RssAnon") - anon0, 1)
    # of file_mib: the pages of the model's own files (weights read in place); the rest is code
    out["weights_file_mib"] = round(sum(benchlib.resident_mib_under(d) for d in
                                        (folder(work, variant), work / f"{variant}-onnx")), 1)
    with torch.inference_mode():
        out.update(quality(loaded, variant, run, work, args))
    return out


def quality(loaded, variant: str, run, work: Path, args) -> dict:
    """KWS accuracy (test split) and, for Whisper variants with a decoder, WER."""
    import numpy as np
    import torch

    from stackslim.export.onnx import graph_inputs
    from stackslim.prune import load_head

    enc, out = loaded.encoder, {}
    if args.kws_clips:
        task = study_task()
        idx = task.splits["test"][: args.kws_clips if args.kws_clips > 0 else None]
        y = torch.from_numpy(task.ids[idx])
        head = None if loaded.kind == "mimic" else load_head(work / "head")[0].eval()
        pred = []
        for s in range(0, len(idx), 8):
            x, n = graph_inputs(enc, [task.dataset.load(i) for i in idx[s : s + 8]])
            res = run(x, n)
            logits = (torch.from_numpy(res[2]) if head is None else
                      head(torch.from_numpy(res[0]), torch.from_numpy(res[1])))
            pred.append(logits.argmax(-1))
        out["kws_accuracy"] = round(float((torch.cat(pred) == y).float().mean()), 4)
        out["kws_clips"] = len(idx)
    if args.wer_clips and enc.family == "whisper" and loaded.kind != "mimic":
        from stackslim.evaluate.wer import WER_WINDOW_S, load_tokenizer, pad_silence, sentence_clips
        from stackslim.models.transcribe import transcribe, word_error_rate

        whisper, tok = load_tokenizer(args.model)
        if whisper is None:  # e.g. a random model: no tokenizer
            return {**out, "wer": None, "wer_note": tok}
        waves, refs = sentence_clips(WER_DATA, args.wer_clips)
        states = []
        for s in range(0, len(waves), 4):
            x, n = graph_inputs(enc, pad_silence(waves[s : s + 4], min_s=WER_WINDOW_S))
            h, m = run(x, n)[:2]
            states += [torch.from_numpy(np.ascontiguousarray(h[b, : int(k)])) for b, k in enumerate(m)]
        hyps = transcribe(whisper, tok, encoder_states=states, batch_size=8, max_new_tokens=64)
        out["wer"] = round(word_error_rate(list(refs), hyps), 4)
        out["wer_clips"] = len(refs)
        out["wer_example"] = hyps[0]
    return out


def parity_of(work: Path, variant: str, runtime: str) -> dict:
    exp = json.loads((work / f"{variant}-onnx" / "export.json").read_text())
    if runtime == "pytorch":
        return {"onnx_mb": None, "parity_max_abs": None, "int8_rel_error": None}
    f = "model.int8.onnx" if runtime.endswith("int8") else "model.onnx"
    p = exp["int8"]["parity"] if runtime.endswith("int8") else exp["parity"]
    return {"onnx_mb": round(exp["files"][f] / 1e6, 2), "parity_max_abs": p["max_abs_diff"],
            "int8_rel_error": p["rel_error"] if runtime.endswith("int8") else None,
            "float_to_int8_size": (round(exp["files"]["model.onnx"] / exp["files"][f], 3)
                                   if runtime.endswith("int8") else None)}


def markdown(doc: dict, args) -> str:
    rows, mach = doc["rows"], doc["machine"]
    fmt = lambda v, p="{:.2f}": "–" if v is None else p.format(v)  # noqa: E731
    md = ["# Deployment: PyTorch vs onnxruntime (float, int8)", "",
          f"`{doc['command']}`: {args.model}, {args.seconds:g} s clips, 1 thread, median of "
          f"{args.repeats}; a fresh process per row, rows interleaved (every variant once per "
          f"runtime). Memory above the imported and warmed libraries; file = memory-mapped "
          f"weights read (of which weights: the model's own files) and code, anon = activations and allocator at the end. KWS: "
          f"accuracy on the study's synth-commands test split; WER: synth-sentences eval clips "
          f"padded to 30 s, the original decoder. The ONNX files hold the encoder.", "",
          "| variant | runtime | load s | batch 1 ms | batch 8 ms | peak MiB (batch 1) | peak MiB | file MiB | of which weights | anon MiB | file MB | float/int8 size | max abs diff vs PyTorch | int8 rel. error | KWS acc. | WER |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['variant']} | {r['runtime']} | {r['load_s']:.2f} | {r['batch1_ms']:.1f} | "
                  f"{r['batch8_ms']:.1f} | {r['peak_mib_batch1']:.0f} | {r['peak_mib_above_imports']:.0f} | "
                  f"{r['file_mib']:.0f} | {fmt(r.get('weights_file_mib'), '{:.0f}')} | {r['anon_mib']:.0f} | {fmt(r['onnx_mb'])} | "
                  f"{fmt(r.get('float_to_int8_size'), '{:.2f}×')} | {fmt(r['parity_max_abs'], '{:.1e}')} | "
                  f"{fmt(r['int8_rel_error'], '{:.3f}')} | {fmt(r.get('kws_accuracy'), '{:.3f}')} | "
                  f"{fmt(r.get('wer'), '{:.3f}')} |")
    md += ["", "Against the teacher and PyTorch float (ratios from the rows above, same run):", "",
           "| variant | runtime | memory vs teacher (same runtime) | batch 1 speed vs PyTorch float | KWS acc. vs PyTorch float (points) | WER vs PyTorch float (points) |",
           "|---|---|---|---|---|---|"]
    by = {(r["variant"], r["runtime"]): r for r in rows}
    for r in rows:
        t, p = by.get(("teacher", r["runtime"])), by.get((r["variant"], "pytorch"))
        mem = fmt(r["peak_mib_above_imports"] / t["peak_mib_above_imports"] if t else None, "{:.0%}")
        spd = fmt(p["batch1_ms"] / r["batch1_ms"] if p else None, "{:.2f}×")
        d = lambda k: fmt(100 * (r[k] - p[k]) if p and r.get(k) is not None and p.get(k) is not None else None, "{:+.1f}")  # noqa: E731
        md.append(f"| {r['variant']} | {r['runtime']} | {mem} | {spd} | {d('kws_accuracy')} | {d('wer')} |")
    md.append(f"\nMachine: {mach['cpu']}, load {mach['load_avg_1m_at_start']} at start; {mach['note']}.\n")
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "stackslim" / "bench-deploy"))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kws-clips", type=int, default=-1, help="test clips for KWS accuracy (-1: all, 0: skip)")
    ap.add_argument("--wer-clips", type=int, default=30, help="synth-sentences eval clips for WER (0: skip)")
    ap.add_argument("--shared", choices=("study", "svd"), default="study",
                    help="study: share.run K3-r16 as the study runs it; svd: svd init, no recovery")
    ap.add_argument("--from-study", default="", metavar="DIR",
                    help="take the shared and mimic variants from a finished study's run folder")
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "RUNTIME"))
    ap.add_argument("--json")
    args = ap.parse_args()
    global SHARED_SVD
    SHARED_SVD = args.shared == "svd"
    work = Path(args.work) / args.model.replace(":", "-")
    if args.child:
        res = child(*args.child, work, args)
        Path(args.json).write_text(json.dumps(res))
        return
    mach = benchlib.machine()
    if args.from_study:
        link_study(Path(args.from_study), work, args.variants)
    t = time.perf_counter()
    build(args.model, work, args.variants)
    print(f"built in {time.perf_counter() - t:.0f} s", flush=True)
    rows = []
    for runtime in RUNTIMES:  # interleaved: every variant once per runtime
        for v in args.variants:
            r = benchlib.run_child(Path(__file__), [v, runtime, "--model", args.model, "--work", args.work,
                                                    "--seconds", str(args.seconds), "--repeats", str(args.repeats),
                                                    "--kws-clips", str(args.kws_clips),
                                                    "--wer-clips", str(args.wer_clips),
                                                    "--shared", args.shared], threads=1, timeout=1800)
            r.update(parity_of(work, v, runtime))
            rows.append(r)
            print({k: v for k, v in r.items() if k != "wer_example"}, flush=True)
    doc = {"command": "python bench/deploy.py " + " ".join(sys.argv[1:]), "machine": mach,
           "inputs": {"model": args.model, "clip_seconds": args.seconds, "repeats": args.repeats,
                      "threads": 1, "pruned": "5th layer deleted", "shared": args.shared,
                      "study_specs": STUDY_SPEC, "from_study": args.from_study or None,
                      "kws": f"{DATA} {TASK} test split of the study's task",
                      "wer": f"{WER_DATA} eval, {args.wer_clips} clips, 30 s window",
                      "units": {"load_s": "s", "batchB_ms": "ms per call, median",
                                "peak_mib_above_imports": "MiB", "onnx_mb": "MB"}},
           "rows": rows}
    for p in benchlib.write_results("deploy", doc, markdown(doc, args)):
        print("wrote", p)


if __name__ == "__main__":
    main()
