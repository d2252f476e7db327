"""`stackslim.study.run(model, data, out, cfg)`: the whole study on one model and data set.

    from stackslim.study import StudyConfig, run
    result = run("whisper-base", "synth-commands", "runs/study", StudyConfig(quick=True))
    result.to_json()["compare"]["rows"]           # every variant side by side

Steps, in order, each resumable (`steps.StepRunner`), each calling a method's pipeline:
similarity and blocks (`analyze`: `stackslim.similarity.run`); pruning with every strategy, whose
frozen-encoder teacher is the study's teacher (`prune`: `stackslim.prune.run`); each mimic
variant (`mimic-<v>`: `stackslim.mimic.run`); each shared variant with recovery (`share-<v>`:
`stackslim.share.run`); for Whisper models, word error rate of the teacher and the compressed
encoders (`wer`) and, for a multilingual Whisper teacher, their speech translation into English
(BLEU, chrF) and same-language WER (`translate`, on by default, `--no-translate` to skip); then
one side-by-side measurement of every variant (`compare`) and the report
(`results.json`, `report.html`, `tradeoff.png`).

Every method config is built (and so checked) before the first step; a step's key is the
inputs' content (`stackslim.run.fingerprint`) and that config, so a changed data set or option
reruns exactly the steps it affects. Each compression step trains its own head on the same
splits with the same seed, so every capacity is accuracy / the accuracy of that step's
frozen-encoder teacher on the same test split.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .. import mimic, prune, share, similarity
from ..data import AudioDataset, load_dataset
from ..heads import prepare_task
from ..mimic.config import MimicConfig
from ..models import Encoder
from ..models.memo import remember_states
from ..prune.config import PruneConfig
from ..results import provenance
from ..run import fingerprint, start_run
from ..share.config import ShareConfig
from ..share.pipeline import final_evaluation
from ..similarity.config import AnalyzeConfig
from .compare import compare_step, wer_step
from .config import (StudyConfig, StudyError, parse_mimic, parse_share, preset, share_budget,
                     share_unlabelled, step_names)
from .report import write_report
from .steps import StepRunner, StopStudy
from .translate import translate_step

DEFAULT_MODEL = "whisper-base"
DEFAULT_DATA = "synth-commands"
RESULTS = "results.json"
WRITES = (RESULTS, "report.html", "tradeoff.png")  # the step folders are the resume state: kept


@dataclass
class StudyResult:
    """What the study measured; `to_json()` is DIR/results.json.

    Attributes:
        model, family, num_layers, data, clips_in_data: the teacher and the data set.
        config: the StudyConfig (after the quick preset). versions: `results.provenance()`.
        steps_run, steps_skipped: the steps run now and those found done by an earlier run.
        analyze, prune, mimic, share, wer, translate, compare: each step's summary (mimic and
            share: one per variant; wer: Whisper only; translate: Whisper with --translate, a
            `skipped` reason for an English-only teacher).
        stopped_after: the `--stop-after` step when the run stopped there (nothing written).
    """

    model: str
    family: str
    num_layers: int
    data: str
    clips_in_data: int
    config: StudyConfig
    versions: dict = field(default_factory=provenance)
    steps_run: list[str] = field(default_factory=list)
    steps_skipped: list[str] = field(default_factory=list)
    analyze: dict = field(default_factory=dict)
    prune: dict = field(default_factory=dict)
    mimic: dict = field(default_factory=dict)
    share: dict = field(default_factory=dict)
    wer: dict | None = None
    translate: dict | None = None
    compare: dict = field(default_factory=dict)
    stopped_after: str = ""

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["config"] = asdict(self.config)
        for k in ("wer", "translate", "stopped_after"):
            if not d[k]:
                del d[k]
        return d


def study_clips(ds: AudioDataset, cfg: StudyConfig) -> list[int]:
    """The clips every step works on (all splits of the task's seeded subset)."""
    task = prepare_task(ds, cfg.task, seed=cfg.seed, max_clips=cfg.max_clips)
    return sorted({int(i) for idx in task.splits.values() for i in idx})


def method_configs(cfg: StudyConfig, whisper: bool = False) -> dict[str, Any]:
    """The config of every method step (step name → config), built before the first step so
    that a bad combination fails before anything runs; each is part of its step's key.
    `whisper`: the teacher is a Whisper model (what "auto" options resolve to)."""
    cap = cfg.max_minutes
    mimic_train = replace(MimicConfig().train, epochs=cfg.mimic_epochs, max_minutes=cap, seed=cfg.seed)
    budget = share_budget(cfg, whisper)
    share_train = replace(ShareConfig().train, epochs=budget.recover_epochs, max_minutes=cap, seed=cfg.seed)
    out: dict[str, Any] = {
        "analyze": AnalyzeConfig(max_clips=cfg.analyze_clips, seed=cfg.seed),
        "prune": PruneConfig(task=cfg.task, strategies=cfg.strategies, max_clips=cfg.max_clips,
                             train=replace(PruneConfig().train, seed=cfg.seed)),
    }
    for spec in cfg.mimic_grid:
        kind, layers, z = parse_mimic(spec)
        out[f"mimic-{spec}"] = MimicConfig(kind=kind, layers=layers, hidden=z, task=cfg.task,
                                           max_clips=cfg.max_clips, task_epochs=cfg.mimic_epochs,
                                           train=mimic_train)
    pool = share_unlabelled(cfg, whisper)
    for spec in cfg.share_grid:
        groups, k, rank, size = parse_share(spec)
        out[f"share-{spec}"] = ShareConfig(
            group=k, groups=groups, **({"size": size} if size else {"rank": rank}),
            task=cfg.task, max_clips=cfg.max_clips,
            init=cfg.share_init, align=cfg.share_align, recover_states=cfg.share_recover_states,
            unlabelled=pool, max_unlabelled=cfg.share_max_unlabelled,
            augment=budget.augment if pool else 0,
            asr_weight=cfg.share_asr_weight, local_epochs=budget.local_epochs, wer_clips=0,
            latency_clips=0, train=share_train)
    return out


def capped(summary: Any, path: str = "") -> list[str]:
    """The training stages in a result that a wall-clock cap cut short: every TrainLog (a dict
    with `stopped_by`) whose `stopped_by` is "time", named by its place ("logs.stage1")."""
    if hasattr(summary, "to_json"):  # a TrainLog, or a result holding them
        summary = summary.to_json()
    if not isinstance(summary, dict):
        return []
    if summary.get("stopped_by") == "time":
        return [path or "training"]
    return [p for k, v in summary.items() for p in capped(v, f"{path}.{k}" if path else str(k))]


def _analyze_step(enc: Encoder, ds: AudioDataset, cfg: StudyConfig, acfg: AnalyzeConfig, progress: bool):
    """Similarity on (a seeded subset of) the study's own clips: the teacher states computed
    here are the ones the later steps read from the memo."""
    def step(folder) -> dict:
        s = _json(similarity.run(enc, ds, folder, acfg, progress=progress, clips=study_clips(ds, cfg)))
        return {"blocks": s["blocks"], "robustness": (s["robustness"] or {}).get("verdict"),
                "clips": s["clips"], "block_influence": s["block_influence"]}
    return step


def _prune_step(enc: Encoder, ds: AudioDataset, pcfg: PruneConfig, progress: bool):
    def step(folder) -> dict:
        res = _json(prune.run(enc, ds, folder, pcfg, progress=progress))
        return {"teacher": res["teacher"], "summary": res["summary"], "best": res["best"],
                "threshold": res["threshold"], "task": res["task"],
                "strategies": {n: {"order": s["order"], "family": s["family"],
                                   "no_refit": s["curves"]["no_refit"]} for n, s in res["strategies"].items()}}
    return step


def _mimic_step(enc: Encoder, ds: AudioDataset, mcfg: MimicConfig, progress: bool):
    def step(folder) -> dict:
        r = _json(mimic.run(enc, ds, folder, mcfg, progress=progress))
        logs = {k: _json(v) for k, v in r["logs"].items()}  # TrainLogs (None: a stage not run)
        return {"accuracy": r["mimic"].get("accuracy"), "teacher_accuracy": r["teacher"].get("accuracy"),
                "capacity": r["capacity"], "model_dir": str(folder / "model"),
                "epochs": {k: (v or {}).get("epochs_run") for k, v in logs.items()},
                "capped": capped(logs)}
    return step


def _share_step(model: str, enc: Encoder, ds: AudioDataset, scfg: ShareConfig, progress: bool):
    def step(folder) -> dict:
        return share_summary(_json(share.run(enc, ds, folder, scfg, progress=progress, spec=model)), folder)
    return step


def share_summary(r: dict, folder: os.PathLike) -> dict:
    """A shared variant's row from its share.json: the accuracy of the last training stage that
    ran (the recovery, else the layer-wise fit, else the conversion alone)."""
    trained = final_evaluation(r)
    acc_t = r["teacher"]["accuracy"]
    return {"accuracy": trained["accuracy"], "before_accuracy": r["before"]["accuracy"],
            "teacher_accuracy": acc_t, "capacity": trained["accuracy"] / acc_t if acc_t else 0.0,
            "stack_ratio": r["size"]["stack_ratio"], "groups": r["groups"],
            "model_dir": os.path.join(folder, "model"),
            "epochs": (r.get("recovery") or {}).get("epochs_run", 0),
            "capped": capped(r.get("recovery"), "recovery")}


def _json(result: Any) -> Any:
    """A result object as JSON-able data (`to_json()`); data passes through."""
    return result.to_json() if hasattr(result, "to_json") else result


def run(model: str | os.PathLike = DEFAULT_MODEL, data: str | os.PathLike | AudioDataset = DEFAULT_DATA,
        out: str | os.PathLike = "runs/study", cfg: StudyConfig = StudyConfig(), *,
        progress: bool = True, force: bool = False) -> StudyResult:
    """Run (or resume) the study; writes DIR/results.json, DIR/report.html and DIR/tradeoff.png.

    Args:
        model: the teacher (a spec for `load_encoder`: hub id, folder, bundled or random model).
        data: a labelled data set (folder, CSV manifest, synth-commands) or an AudioDataset.
        out: the output folder; its step folders (`analyze/`, `prune/`, ...) are the resume state.
        cfg: what to run (`StudyConfig`; `quick` applies the small preset).
        progress: show progress bars. force: take over a folder of another command's run.

    Returns:
        The StudyResult written to DIR/results.json, or, with `cfg.stop_after`, the steps so far
        (`stopped_after` set, nothing written: the next run resumes after that step).
    """
    cfg = preset(cfg)
    configs = method_configs(cfg)  # every option checked before anything loads
    spec = str(getattr(model, "name", model))
    with start_run("study", out, cfg, model=model, data=data, writes=WRITES, force=force) as job:
        enc = job.encoder(model)
        ds = data if isinstance(data, AudioDataset) else load_dataset(data)
        is_whisper = enc.family == "whisper"
        if cfg.share_asr_weight > 0 and not is_whisper:
            raise StudyError(f"--share-asr-weight needs a Whisper model; {spec} is {enc.family!r}")
        configs = method_configs(cfg, is_whisper)  # "auto" options resolved for this teacher
        names = step_names(cfg, is_whisper)
        if cfg.stop_after and cfg.stop_after not in names:
            raise StudyError(f"--stop-after {cfg.stop_after!r}: no such step for a {enc.family} model; "
                             f"steps: {', '.join(names)}")
        result = StudyResult(model=enc.name, family=enc.family, num_layers=enc.num_layers, data=ds.name,
                             clips_in_data=len(ds), config=cfg)
        runner = StepRunner(job.out, names, fingerprint(spec, ds), progress=progress, stop_after=cfg.stop_after)
        try:
            _steps(runner, result, spec, enc, ds, cfg, configs, progress)
        except StopStudy as s:
            result.stopped_after = str(s)
            return result
        finally:
            runner.close()
            result.steps_run, result.steps_skipped = runner.ran, runner.skipped
        results = result.to_json()
        job.write_json(RESULTS, results)
        if job.is_main:
            write_report(results, job.out)
    return result


def _steps(runner: StepRunner, result: StudyResult, spec: str, enc: Encoder, ds: AudioDataset,
           cfg: StudyConfig, configs: dict, progress: bool) -> None:
    """Every step in order, each summary stored on `result` as soon as it is known."""
    with remember_states(enc):  # the teacher runs once per clip, not once per step
        result.analyze = runner.run("analyze", [configs["analyze"], cfg.task, cfg.max_clips],
                                    _analyze_step(enc, ds, cfg, configs["analyze"], progress))
        result.prune = runner.run("prune", configs["prune"], _prune_step(enc, ds, configs["prune"], progress))
        for m in cfg.mimic_grid:
            c = configs[f"mimic-{m}"]
            result.mimic[m] = runner.run(f"mimic-{m}", c, _mimic_step(enc, ds, c, progress))
        for s in cfg.share_grid:
            c = configs[f"share-{s}"]
            result.share[s] = runner.run(f"share-{s}", [c, spec], _share_step(spec, enc, ds, c, progress))
        if enc.family == "whisper":
            result.wer = runner.run("wer", [list(runner.keys.values()), cfg.wer_clips],
                                    wer_step(spec, enc, cfg.wer_clips, result.prune, result.mimic, result.share))
            if cfg.translate:
                result.translate = runner.run(
                    "translate", [[k for n, k in runner.keys.items() if n != "wer"], cfg.translate_data,
                                  cfg.translate_clips],
                    translate_step(spec, enc, cfg.translate_data, cfg.translate_clips, result.prune,
                                   result.mimic, result.share))
    # outside the memo: the teacher's latency must be its forward pass, not a lookup
    summaries = {"prune": result.prune, "mimic": result.mimic, "share": result.share,
                 "wer": result.wer or {}, "translate": result.translate or {}}
    result.compare = runner.run("compare", [list(runner.keys.values()), cfg.latency_clips, cfg.task,
                                            cfg.max_clips, runner.ran, cfg.onnx],
                                compare_step(enc, ds, cfg, summaries))
