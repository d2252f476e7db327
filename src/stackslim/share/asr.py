"""Recovery for transcription: train a shared Whisper encoder on what the decoder reads.

Matching hidden states frame by frame (`recover.distill_loss`) brings keyword accuracy back, but
the original decoder is far more sensitive than a pooled head: a shared whisper-base at 49.9% of
the stack recovered to the teacher's keyword accuracy while its WER rose from 97% to 141%
(bench/results/share-cli-whisper-base-K3-r56). Two reasons, both fixed here:

1. Its sentences were cut into 1 s windows (the task clips' length), while the WER check reads
   whole sentences followed by silence (`evaluate.pad_silence`): the student never saw frames
   past the first second nor the silent tail. Here the unlabelled clips are kept whole and
   padded the same way (`padded_batches`).
2. Nothing in the loss measured what the decoder does with the states. Sequence-level
   distillation (Kim & Rush, 2016) through the frozen original decoder adds it: the teacher
   transcribes each unlabelled clip once (greedy, `teacher_tokens`), and the decoder,
   teacher-forced on those tokens y_u = (prompt, text, eot), must predict them from the
   student's last state h_L(u) (after the final norm):

       L_asr = (1 / Σ_u |y_u|) Σ_u Σ_t −log p_dec(y_u,t | y_u,<t, h_L(u))

   over the text tokens and eot of every unlabelled clip u of the batch. The decoder has no
   cross-attention mask, so each clip is decoded alone at its own length.

   Each clip has its own prompt (`row_prompts`), from its manifest row: a ``task`` column
   (``transcribe`` or ``translate``) if it has one, else ``translate`` for a row in another
   language than English with an English reference (``reference_en``: synth-translate), else
   ``transcribe``; the language from the ``language`` column (default ``en``). A German
   translate row reads ``<|startoftranscript|> <|de|> <|translate|> <|notimestamps|>``, an
   English row ``<|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|>`` (English-only
   models: ``<|startoftranscript|> <|notimestamps|>``, as before). The teacher decodes each clip
   with its prompt and the loss is teacher-forced with the same prompt, so a recovery on
   synth-translate keeps translation, not only English transcription.
   With `top_k` = K > 1 (word-level distillation, also Kim & Rush) each position's target is
   the teacher decoder's distribution q_t instead of its one greedy token: its K most likely
   tokens, renormalised, from the teacher's own states, computed once:

       L_asr = (1 / Σ_u |y_u|) Σ_u Σ_t −Σ_{j ∈ top-K(q_t)} q_t(j) log p_dec(j | y_u,<t, h_L(u))

   K = 1 is the greedy-token loss above (the greedy token is the teacher's argmax).

Validation, on held-out unlabelled clips, by one of two scores (`AsrRecovery.select`):
- "agreement" (`token_agreement`): the share of teacher tokens the decoder's argmax predicts
  from the student's states, teacher-forced. No decoding, but it is a loose proxy: two epochs of
  the same run with agreement 93.5% and 93.75% transcribed the eval sentences at 22.7% and 30.6%
  WER (bench/results/share-cli-whisper-base-K3-r56-asr-last*).
- "wer" (`decoded_wer`): free-running greedy transcripts of the student's states against the
  teacher's, scored 1 − min(WER, 1): what the WER check measures, against the teacher's words
  instead of the references (held-out clips need no transcripts), at the cost of a greedy decode
  of every held-out clip (up to 64 tokens) per validation.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import runtime
from ..evaluate.wer import pad_silence
from ..models.base import EncoderError
from ..models.cache import StateCache
from ..models.transcribe import greedy_decode, prompt_ids, word_error_rate


def padded_batches(batches):
    """`(waves, indices)` batches with every clip followed by silence, as `whisper_wer` reads
    sentences (`pad_silence`: up to max(6 s, clip + 3.5 s))."""
    for waves, idx in batches:
        yield pad_silence(waves), idx


@dataclass
class AsrTargets:
    """The frozen Whisper model and, per cache row, the teacher's token ids to predict.

    Attributes:
        model: WhisperForConditionalGeneration; its decoder and projection are used, frozen.
        prompt: the decoder prompt of every row without its own in `prompts`
            (``<|startoftranscript|> ... <|notimestamps|>``).
        eot: the end-of-text id.
        tokens: cache row → the teacher's text token ids (prompt and eot excluded).
        soft: cache row → (q (S, K), ids (S, K)): the teacher decoder's K most likely tokens at
            each of the S = len(tokens) + 1 target positions and their renormalised
            probabilities; None: the greedy tokens are the targets.
        prompts: cache row → its own prompt (`row_prompts`: language and task of the clip);
            None: `prompt` for every row.
    """

    model: torch.nn.Module
    prompt: list[int]
    eot: int
    tokens: dict[int, list[int]]
    soft: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
    prompts: dict[int, list[int]] | None = None

    def prompt_of(self, row: int) -> list[int]:
        """The decoder prompt of cache row `row`."""
        return self.prompt if self.prompts is None else self.prompts.get(row, self.prompt)

    def shifted(self, offset: int) -> "AsrTargets":
        """The same targets for rows moved by `offset` (clips appended after others)."""
        soft = None if self.soft is None else {r + offset: q for r, q in self.soft.items()}
        prompts = None if self.prompts is None else {r + offset: p for r, p in self.prompts.items()}
        return AsrTargets(self.model, self.prompt, self.eot,
                          {r + offset: t for r, t in self.tokens.items()}, soft, prompts)

    def logits(self, h: torch.Tensor, toks: list[int], prompt: list[int] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits (S, V) of one clip's states h (T, D) and their targets (S,):
        the text tokens and eot, each predicted from everything before it, after `prompt`
        (default: `self.prompt`; a row's own is `prompt_of(row)`)."""
        prompt = self.prompt if prompt is None else prompt
        ids = torch.tensor([prompt + toks + [self.eot]], device=h.device)  # (1, P + n + 1)
        out = self.model.model.decoder(input_ids=ids[:, :-1], encoder_hidden_states=h[None])
        start = len(prompt) - 1  # the position whose next token is the first text token
        logits = self.model.proj_out(out.last_hidden_state[0, start:])  # (n + 1, V)
        return logits, ids[0, start + 1:]

    def loss_sum(self, states: torch.Tensor, lengths: torch.Tensor, rows: Sequence[int]
                 ) -> tuple[torch.Tensor, int]:
        """Σ of −log p over the target tokens of the batch's rows that have targets, and their
        count. states: (B, T, D) last states of `rows`; lengths (B,)."""
        total, count = states.new_zeros(()), 0
        for b, r in enumerate(rows):
            toks = self.tokens.get(r)
            if toks is None:
                continue
            logits, y = self.logits(states[b, : int(lengths[b])], toks, self.prompt_of(r))
            if self.soft is None:
                total = total + F.cross_entropy(logits.float(), y, reduction="sum")
            else:
                q, ids = self.soft[r]  # (S, K)
                logp = F.log_softmax(logits.float(), dim=-1).gather(1, ids.to(logits.device))
                total = total - (q.to(logp.device) * logp).sum()
            count += len(y)
        return total, count


def clip_task(clip) -> tuple[str | None, str]:
    """(language, task) of one manifest row (a `data.Clip`): its ``task`` column if set, else
    ``translate`` for a row in another language than English that has an English reference
    (``reference_en``), else ``transcribe``; language None means English (no column)."""
    lang = (clip.get("language") or "").strip() or None
    task = (clip.get("task") or "").strip()
    if not task:
        english = lang in (None, "en")
        task = "translate" if not english and (clip.get("reference_en") or "").strip() else "transcribe"
    return lang, task


def row_prompts(model: torch.nn.Module, tokenizer, clips: Sequence) -> list[list[int]]:
    """Each clip's decoder prompt (`clip_task`, `models.transcribe.prompt_ids`), in order.

    Raises:
        EncoderError: one line naming the first clip whose language or task the model has no
            tokens for (e.g. a German row read by an English-only model).
    """
    known: dict[tuple[str | None, str], list[int]] = {}
    out = []
    for clip in clips:
        key = clip_task(clip)
        if key not in known:
            try:
                known[key] = prompt_ids(model, tokenizer, *key)[0]
            except EncoderError as e:
                raise EncoderError(f"{getattr(clip, 'path', clip)}: {e}") from None
        out.append(known[key])
    return out


def decode_rows(model: torch.nn.Module, states: dict[int, torch.Tensor],
                prompts: dict[int, list[int]], eot: int, max_new_tokens: int = 64,
                batch_size: int = 16, bar=None) -> dict[int, list[int]]:
    """Greedy token ids of each row's states (T_r, D) after its prompt: rows of the same prompt
    and length decoded together, `batch_size` at a time (the decoder has no cross-attention
    mask, so a batch must not be padded); `bar` (tqdm) is advanced per row."""
    groups: dict[tuple, list[int]] = {}
    for r, h in states.items():
        groups.setdefault((tuple(prompts[r]), h.shape[0]), []).append(r)
    out: dict[int, list[int]] = {}
    for (prompt, _), rows in groups.items():
        for s in range(0, len(rows), batch_size):
            chunk = rows[s : s + batch_size]
            h = torch.stack([states[r] for r in chunk])  # (b, T, D)
            out.update(zip(chunk, greedy_decode(model, h, list(prompt), eot, max_new_tokens)))
            if bar is not None:
                bar.update(len(chunk))
    return out


@torch.no_grad()
def teacher_tokens(model: torch.nn.Module, tokenizer, cache: StateCache, max_new_tokens: int = 64,
                   desc: str = "teacher transcripts", progress: bool = True, top_k: int = 1,
                   prompts: Sequence[list[int]] | None = None, batch_size: int = 16) -> AsrTargets:
    """The teacher's greedy transcripts of the clips of `cache` (its last states, key -1), once,
    and with `top_k` > 1 its decoder's top-k distribution at each target position (`soft`).

    Args:
        prompts: one decoder prompt per cache row (`row_prompts`); None: the English
            transcription prompt (`prompt_ids(model, tokenizer)`) for every row.
        batch_size: rows of one prompt and length decoded together (`decode_rows`).

    Under torchrun each rank decodes rows r, r + W, ... and the ranks exchange their tokens.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if prompts is not None and len(prompts) != len(cache):
        raise ValueError(f"{len(prompts)} prompts for {len(cache)} cache rows")
    model.eval()
    prompt, eot = prompt_ids(model, tokenizer)
    r, w = runtime.rank(), runtime.world_size()
    rows = list(range(r, len(cache), w))
    row_prompt = {row: (prompt if prompts is None else list(prompts[row])) for row in rows}
    with tqdm(total=len(rows), desc=desc, unit="clip", leave=False,
              disable=not progress or not runtime.is_main()) as bar:
        mine = decode_rows(model, {row: cache.states[-1][row] for row in rows}, row_prompt, eot,
                           max_new_tokens, batch_size, bar)
    if runtime.is_distributed():
        for part in runtime.all_gather_objects(mine):
            mine.update(part)
    own = None if prompts is None else {row: list(p) for row, p in enumerate(prompts)}
    targets = AsrTargets(model, prompt, eot, dict(sorted(mine.items())), prompts=own)
    return soft_targets(targets, cache, top_k) if top_k > 1 else targets


def _top_k(targets: AsrTargets, h: torch.Tensor, row: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's k most likely tokens (S, k) and their renormalised probabilities (S, k)
    at each target position of row `row`'s tokens, teacher-forced on the teacher's states
    h (T, D) after the row's prompt."""
    logits, _ = targets.logits(h.float(), targets.tokens[row], targets.prompt_of(row))  # (S, V)
    q, ids = F.softmax(logits.float(), dim=-1).topk(k, dim=-1)
    return q / q.sum(-1, keepdim=True), ids


@torch.no_grad()
def soft_targets(targets: AsrTargets, cache: StateCache, top_k: int) -> AsrTargets:
    """`targets` with `soft` filled from the teacher's last states in `cache` (key -1)."""
    soft = {r: _top_k(targets, cache.states[-1][r], r, top_k) for r in targets.tokens}
    return replace(targets, soft=soft)


@dataclass
class AsrRecovery:
    """What `recover` needs for the decoder loss: targets of recovery-cache rows, the weight
    μ of L_asr, held-out clips (states 0 and L, and their targets) for validation, and how
    they score: `select` "agreement" or "wer" (module docstring; "wer" needs `tokenizer`)."""

    train: AsrTargets
    weight: float = 1.0
    val_cache: StateCache | None = None
    val: AsrTargets | None = None
    select: str = "agreement"
    tokenizer: object = None

    def __post_init__(self) -> None:
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {', '.join(SELECT)}, got {self.select!r}")
        if self.select == "wer" and self.tokenizer is None:
            raise ValueError("select='wer' needs the tokenizer to compare words")

    def score(self, student) -> float:
        """The validation score of `student` on the held-out clips (higher is better)."""
        if self.select == "wer":
            return 1.0 - min(decoded_wer(student, self.val, self.val_cache, self.tokenizer), 1.0)
        return token_agreement(student, self.val, self.val_cache)


SELECT = ("agreement", "wer")


@torch.no_grad()
def token_agreement(student, targets: AsrTargets, cache: StateCache, batch_size: int = 16) -> float:
    """Share of the teacher's tokens (text and eot) that the decoder's argmax predicts from the
    student's last states, teacher-forced, over the rows of `cache` that have targets."""
    right = count = 0
    for r, h in _last_states(student, cache, sorted(targets.tokens), batch_size):
        logits, y = targets.logits(h, targets.tokens[r], targets.prompt_of(r))
        right += int((logits.argmax(-1) == y).sum())
        count += len(y)
    return right / max(count, 1)


def _last_states(student, cache: StateCache, rows_all: list[int], batch_size: int):
    """(row, h (T_row, D)) for each of `rows_all`: the student's last state after the final
    norm, from the cached states 0, run `batch_size` rows at a time and cut to each row's length."""
    for s in range(0, len(rows_all), batch_size):
        rows = rows_all[s : s + batch_size]
        x0, n = cache.batch(0, rows)
        h = student.stack_forward(x0, n, final_norm=True, keep=False).states[-1]  # (B, T, D)
        for b, r in enumerate(rows):
            yield r, h[b, : int(n[b])]


@torch.no_grad()
def decoded_wer(student, targets: AsrTargets, cache: StateCache, tokenizer,
                batch_size: int = 16, max_new_tokens: int = 64) -> float:
    """Corpus WER of the student's greedy transcripts (or translations: each row's own prompt)
    of the rows of `cache` that have targets, against the teacher's (its tokens, decoded):
    free-running, as `whisper_wer` reads clips. `max_new_tokens` caps both sides alike:
    `teacher_tokens`' default."""
    rows_all = sorted(targets.tokens)
    states = dict(_last_states(student, cache, rows_all, batch_size))  # row → (T_r, D)
    toks = decode_rows(targets.model, states, {r: targets.prompt_of(r) for r in rows_all},
                       targets.eot, max_new_tokens, batch_size)
    hyps = [tokenizer.decode(toks[r], skip_special_tokens=True).strip() for r in rows_all]
    refs = [tokenizer.decode(targets.tokens[r], skip_special_tokens=True).strip() for r in rows_all]
    return word_error_rate(refs, hyps)


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """`module`'s parameters without gradients inside the block (gradients still flow through
    it to its inputs), restored after."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield module
    finally:
        for p, f in flags:
            p.requires_grad_(f)
