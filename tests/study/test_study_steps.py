"""Resumable steps: a same key skips, a changed input or option reruns and says which."""
from __future__ import annotations

from stackslim.study.steps import StepRunner, StopStudy


def _runner(out, inputs, stop_after=""):
    return StepRunner(out, ["a", "b"], inputs, progress=False, stop_after=stop_after)


def test_same_key_skips_changed_inputs_or_options_rerun_and_say_so(tmp_path, capsys):
    calls = []

    def fn(folder):
        calls.append(folder.name)
        return {"n": len(calls)}

    r = _runner(tmp_path, "data-v1")
    assert r.run("a", {"x": 1}, fn)["n"] == 1 and r.ran == ["a"]
    r = _runner(tmp_path, "data-v1")
    assert r.run("a", {"x": 1}, fn)["n"] == 1 and r.skipped == ["a"] and calls == ["a"]
    assert "running it again" not in capsys.readouterr().out

    r = _runner(tmp_path, "data-v2")  # the data set's content changed
    assert r.run("a", {"x": 1}, fn)["n"] == 2 and r.ran == ["a"]
    said = capsys.readouterr().out
    assert "step a" in said and "inputs" in said and "options" not in said

    r = _runner(tmp_path, "data-v2")  # an option changed
    assert r.run("a", {"x": 2}, fn)["n"] == 3
    said = capsys.readouterr().out
    assert "options" in said and "inputs" not in said


def test_stop_after_raises_once_the_step_is_done(tmp_path):
    r = _runner(tmp_path, "d", stop_after="a")
    try:
        r.run("a", {}, lambda folder: {})
    except StopStudy as s:
        assert str(s) == "a"
    else:
        raise AssertionError("no StopStudy")
    assert (tmp_path / "a" / "step.json").is_file()


def test_a_changed_data_set_reruns_the_steps_that_read_it(tmp_path, capsys):
    """The step key holds the data set's content: a clip rewritten between two runs reruns the
    step (and says why); an unchanged set resumes."""
    import json
    import os

    from tonedata import make_tone_dataset
    from stackslim.cli import main

    data = make_tone_dataset(tmp_path / "tones", words=2, speakers=3, per=2)
    out = tmp_path / "study"
    argv = ["study", "random:wav2vec2", str(data), "--quick", "--out", str(out), "--max-clips", "12",
            "--analyze-clips", "12", "--stop-after", "analyze", "--quiet"]
    assert main(argv) == 0
    marker = out / "analyze" / "step.json"
    first = json.loads(marker.read_text())
    capsys.readouterr()
    assert main(argv) == 0  # nothing changed: resumed
    assert json.loads(marker.read_text()) == first and "running it again" not in capsys.readouterr().out
    clip = next((data / "w0").iterdir())
    st = clip.stat()
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the clip was rewritten
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "step analyze" in said and "inputs" in said
    assert json.loads(marker.read_text())["inputs"] != first["inputs"]
