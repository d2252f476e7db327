"""One table of `stackslim share` runs on the CLI: the share.json files of bench/results/share-cli-*.

    python bench/share_cli_table.py                  # every bench/results/share-cli-*/share.json
    python bench/share_cli_table.py DIR [DIR ...]    # these run folders, in this order

Each run is a plain `stackslim share MODEL DATA --out DIR ...` (no bench code in between); its
command is rebuilt from the config recorded in its share.json (every option that differs from
`ShareConfig`'s default), so that each row says how to rerun it. Writes
bench/results/share-cli.md: stack size, keyword accuracy and WER of the teacher, right after
conversion and after recovery, with what the recovery trained on and how long it ran. A run
folder's optional `NOTE.md` (how the machine was shared while it ran, say) is quoted under the
table.
"""
from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

from stackslim.results import write_atomic
from stackslim.share.config import ShareConfig

OUT = Path(__file__).resolve().parent / "results"


def command(run: dict) -> str:
    """`stackslim share ...` with every option whose recorded value is not the default."""
    cfg, parts = run["config"], ["stackslim share", run["model"], run["data"], "--out DIR"]
    for f in fields(ShareConfig):
        v = cfg.get(f.name, f.default)
        if v == f.default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parts.append(flag if v else "--no-" + f.name.replace("_", "-"))
        else:
            parts.append(f"{flag} {v}")
    return " ".join(parts)


def row(name: str, run: dict) -> str:
    pct = lambda x: f"{100 * x:.1f}" if x is not None else "–"  # noqa: E731
    t, b, a = run["teacher"], run["before"], run.get("after") or {}
    rec, data = run.get("recovery") or {}, (run.get("recovery") or {}).get("data") or {}
    asr = data.get("asr")
    trained = (f"{data.get('labelled_clips', 0)} labelled + {data.get('unlabelled_clips', 0)} "
               + ("whole sentences, decoder loss ×" + f"{asr['weight']:g}"
                  + (f" on the teacher's top {asr['top_k']}" if asr.get("top_k", 1) > 1 else "") if asr
                  else f"unlabelled in {data.get('unlabelled_windows', 0)} windows"))
    cfg = run["config"]
    how = (f"{rec.get('epochs_run', 0)} epochs, {rec.get('seconds', 0) / 60:.1f} min, lr "
           f"{cfg['lr']:g}" + (f" {cfg['recover_schedule']}" if cfg.get("recover_schedule", "constant") != "constant" else "")
           + f", states {cfg.get('recover_states', '?')}")
    if rec.get("best_epoch", -1) >= 0:  # which epoch the validation kept (1-based), and by what
        how += f"; kept epoch {rec['best_epoch'] + 1}" + (" by decoded WER" if asr and asr.get("select") == "wer" else "")
    return (f"| {name} | {pct(run['size']['stack_ratio'])} | {pct(t['accuracy'])} / {pct(b['accuracy'])}"
            f" / {pct(a.get('accuracy'))} | {pct(t.get('wer'))} / {pct(b.get('wer'))} / "
            f"{pct(a.get('wer'))} | {trained} | {how} |")


def markdown(runs: list[tuple[str, dict]], notes: dict[str, str] | None = None) -> str:
    lines = ["# `stackslim share` runs from the command line", "",
             "Rebuilt by `python bench/share_cli_table.py` from each folder's share.json. CPU, 1 torch "
             "thread (OMP_NUM_THREADS=1), on the project's 2-core machine. Keyword accuracy (KWS): test "
             "split of synth-commands through the teacher's frozen head; WER: synth-sentences eval clips "
             "through the original Whisper decoder. Each cell: teacher / right after conversion / after "
             "recovery.", "",
             "| run | stack size % | KWS accuracy % | WER % | recovery trained on | recovery |",
             "|---|---:|---:|---:|---|---|"]
    lines += [row(name, run) for name, run in runs]
    lines += ["", "Commands (DIR: the run's folder):", ""]
    lines += [f"- {name}: `{command(run)}`" for name, run in runs]
    lines += [f"- {name}: {text.strip()}" for name, text in (notes or {}).items()]
    lines += [f"- {name}: WER examples after recovery: "
              + "; ".join(f"“{h[:80] + ('…' if len(h) > 80 else '')}”" for h in (run.get("after") or {}).get("wer_examples", []))
              for name, run in runs]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    dirs = [Path(a) for a in argv] or sorted(OUT.glob("share-cli-*"))
    runs, notes = [], {}
    for d in dirs:
        if (d / "NOTE.md").is_file():
            notes[d.name] = (d / "NOTE.md").read_text()
        f = d / "share.json"
        if not f.is_file():
            print(f"{f}: no share.json (not a finished share run)", file=sys.stderr)
            return 2
        runs.append((d.name, json.loads(f.read_text())))
    write_atomic(OUT / "share-cli.md", markdown(runs, notes))
    print(f"wrote {OUT / 'share-cli.md'} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
