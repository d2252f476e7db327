"""Evaluation in one place: every method and the study measure their models with these.

    from stackslim.evaluate import stack_accuracy, whisper_wer, clip_latency, bytes_on_disk
    stack_accuracy(student, head, test_cache, y_test)        # accuracy from cached states 0
    whisper_wer(enc, whisper, tokenizer, waves, refs)["wer"] # through the original decoder
    clip_latency(fn, waves); interleaved_latency(fns, waves) # CPU ms per clip
    count_params(module); bytes_on_disk(folder)              # size

- `accuracy`: `stack_accuracy` (stack + head on cached states 0), `wave_accuracy` (from clips).
- `wer`: `sentence_clips`, `pad_silence`, `encoder_outputs`, `whisper_wer`, `load_tokenizer`.
- `latency`: `measure_latency`, `clip_latency`, `interleaved_latency`, `count_params`,
  `bytes_on_disk`.
"""
from .accuracy import stack_accuracy, wave_accuracy, wave_logits
from .latency import bytes_on_disk, clip_latency, count_params, interleaved_latency, measure_latency
from .wer import encoder_outputs, load_tokenizer, pad_silence, sentence_clips, whisper_wer

__all__ = ["bytes_on_disk", "clip_latency", "count_params", "encoder_outputs", "interleaved_latency",
           "load_tokenizer", "measure_latency", "pad_silence", "sentence_clips", "stack_accuracy",
           "wave_accuracy", "wave_logits", "whisper_wer"]
