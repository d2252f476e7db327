"""The rows and the Markdown table of bench/mimic.py (bench/results/mimic.json → mimic.md).

A row divides the teacher's latency, timed just before the model (`paired`), by the model's;
capacity = accuracy / the teacher's accuracy; stack cut = 1 − stack parameters / the teacher's.
Rows kept from an earlier run (`measured_by`) are marked with daggers and their command.
"""
from __future__ import annotations


def row_from(name: str, numbers: dict, teacher: dict, teacher_acc: float, extra: dict,
             paired: dict | None = None) -> dict:
    """One table row; speed-ups use `paired` (the teacher timed just before this model, so that
    both see the same load on a shared machine) when given."""
    cap = numbers["accuracy"] / teacher_acc if teacher_acc else 0.0
    stack_cut = 1 - numbers["params_stack"] / teacher["params_stack"]
    ref = paired or teacher["latency"]
    sp1 = ref["batch1_ms"] / numbers["latency"]["batch1_ms"]
    spb = ref["batched_ms"] / numbers["latency"]["batched_ms"]
    return {
        "name": name, **extra,
        "teacher_ms_per_clip_batch1_paired": round(ref["batch1_ms"], 3),
        "teacher_ms_per_clip_batched_paired": round(ref["batched_ms"], 3),
        "params": numbers["params"], "params_stack": numbers["params_stack"], "bytes": numbers["bytes"],
        "ms_per_clip_batch1": round(numbers["latency"]["batch1_ms"], 3),
        "ms_per_clip_batched": round(numbers["latency"]["batched_ms"], 3),
        "stack_ms_per_clip_batch1": round(numbers["stack_latency"]["batch1_ms"], 3),
        "speedup_batch1": round(sp1, 2), "speedup_batched": round(spb, 2),
        "stack_reduction": round(stack_cut, 4),
        "accuracy": round(numbers["accuracy"], 4), "capacity": round(cap, 4),
        "goal": {"capacity_95": cap >= 0.95, "stack_90_smaller": stack_cut >= 0.90,
                 "pipeline_5x_faster": sp1 >= 5.0},
        "units": {"params": "count", "bytes": "bytes", "ms_per_clip_*": "ms per clip (median)",
                  "speedup_*": "teacher ms (timed just before this model) / this ms", "capacity": "accuracy / teacher accuracy"},
    }


def markdown(doc: dict) -> str:
    inp = doc["inputs"]
    lines = [
        f"# Mimicking layers: {inp['model']} on {inp['data']} ({inp['task']})", "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {doc['machine']['cpu']} ({doc['machine']['cpus']} CPUs, torch threads "
        f"{doc['machine']['torch_threads']}), shared with other work. Clips: train {inp['clips']['train']}, "
        f"validation {inp['clips']['validation']}, test {inp['clips']['test']}, unlabelled pool "
        f"{inp['clips']['pool']}; 2-layer target: hidden state {inp['boundary']['boundary']} "
        f"({inp['boundary']['how']}). Latency: audio → logits, 1 s clips, median ms per clip of "
        f"{inp['latency_repeats']} after 2 warm-ups, batch 1 and batch {inp['latency_batch']}; "
        f"Whisper log-mel: {inp.get('log_mel', 'numpy')} implementation for every model.", "",
        "| variant | params | stack params | stack cut | MB on disk | ms/clip b1 | ms/clip b8 | "
        "speed-up b1 | speed-up b8 | accuracy | capacity | stage 1 / 2 epochs | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    earlier = sorted({r["measured_by"] for r in doc["rows"] if r.get("measured_by")})
    for r in doc["rows"]:
        t = r.get("training", {})
        ep = f"{t.get('stage1_epochs', '-')} / {t.get('stage2_epochs', '-')}" if t else ""
        missed = [k for k, v in r["goal"].items() if not v]
        goal = "met" if not missed else "missed: " + ", ".join(missed)
        lines.append(
            f"| {r['name']}{' ' + '†' * (1 + earlier.index(r['measured_by'])) if r.get('measured_by') else ''}"
            f"{' ‡' if r.get('retimed') else ''} | {r['params']:,} | {r['params_stack']:,} | {r['stack_reduction']:.1%} | "
            f"{r['bytes'] / 1e6:.2f} | {r['ms_per_clip_batch1']:.2f} | {r['ms_per_clip_batched']:.2f} | "
            f"{r['speedup_batch1']:.1f}× | {r['speedup_batched']:.1f}× | {r['accuracy']:.4f} | "
            f"{r['capacity']:.2%} | {ep} | {goal if r['name'] != 'teacher' else ''} |")
    lines += ["", "Goal: capacity ≥ 95%, stack ≥ 90% smaller, pipeline ≥ 5× faster at batch 1. "
              "Speed-ups divide by the teacher timed just before each model (the machine is shared and its "
              "load varies). Stack cut: 1 − stack parameters / the teacher's. Pruned: the paper's forward and backward "
              "orders, teacher head kept, most layers deleted at validation capacity ≥ 95%. "
              f"Total time {doc['seconds'] / 60:.1f} min."]
    lines += [f"{'†' * (i + 1)} measured by an earlier run: `{c}` (same splits, teacher and cache; its "
              f"latencies paired with the teacher timed in that run)." for i, c in enumerate(earlier)]
    retimed = sorted({(r["retimed"]["command"], r["retimed"]["when"], r["retimed"]["load_average_1min"],
                       r["retimed"]["repeats"], r["retimed"].get("model", "the saved model"))
                      for r in doc["rows"] if r.get("retimed")})
    lines += [f"‡ latencies re-timed by `{c}` at {w} (load average {ld}): {m} and the teacher "
              f"interleaved, {n} rounds on the same clips; the run's own first timing is kept in mimic.json "
              "(`first_timing`)." for c, w, ld, n, m in retimed]
    lines.append("")
    return "\n".join(lines)
