"""What every text model (TextVAE, LMTextVAE) does with conditions: the conditional VAE's labels, tags and dense
condition embedding (Sohn et al. 2015: c into the encoder and beside z for the decoder), label inference by Bayes'
rule, and the design documents' constraint loss. ``ConditionedText`` is a mixin placed before ``VAE`` in a text
model's bases: its ``loss`` adds the constraint term to ``VAE.loss``."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.text import TextBatch
from ..distributed import to_device
from ..errors import VaekitError


@dataclasses.dataclass(frozen=True, kw_only=True)
class TextConditions:
    """The condition and constraint-loss fields every text model's config has (the text front end reads them)."""

    # a conditional VAE (Sohn et al. 2015) on these labels: one-hot c into the encoder and beside z for the decoder
    label_names: tuple[str, ...] = ()
    # ... and on tags: multi-hot c (several at once, or none)
    tag_names: tuple[str, ...] = ()
    # ... and on a dense embedding of a condition text (vaekit.conditions): its size and what makes it
    # ("word-vectors", or a sentence-transformers model name or folder)
    condition_dim: int = 0
    condition_encoder: str = ""
    # constraint loss: texts labelled constraint_labels[i] are pulled toward the code of constraint_texts[i]
    constraint_labels: tuple[str, ...] = ()
    constraint_texts: tuple[str, ...] = ()
    constraint_weight: float = 0.0
    constraint_threshold: float = 0.0

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def num_tags(self) -> int:
        return len(self.tag_names)


class ConditionedText:
    """Condition and constraint methods of a text model; the model provides ``config`` (a TextConditions),
    ``encode``, ``log_likelihood``, ``batch`` and ``device``."""

    # --- the constraint loss ---------------------------------------------------------------------
    def loss(self, x: TextBatch, kl_weight: float = 1.0, free_bits: float = 0.0, generator=None):
        """The negative ELBO, plus with constraints (the design documents' constraint loss)
        weight * max(0, ||mu(x) - mu(constraint)||^2 - threshold) for each text whose label has a constraint,
        averaged over the batch. The constraint's code is a fixed target each step (no gradient through it)."""
        out = super().loss(x, kl_weight=kl_weight, free_bits=free_bits, generator=generator)
        cfg = self.config
        if not cfg.constraint_texts or cfg.constraint_weight <= 0 or not self.training:
            return out
        labels = self._labels_of(x)
        label_ids = getattr(self, "_constraint_label_ids", None)
        if label_ids is None:
            label_ids = self._constraint_label_ids = [self._raw_label_index(name) for name in cfg.constraint_labels]
        with torch.no_grad():
            targets = self.encode(self._constraint_batch(x)).mean  # (k, d)
        penalty = torch.zeros((), device=out.posterior.mean.device)
        for target, label in zip(targets, label_ids):
            mask = labels.to(out.posterior.mean.device) == label
            if mask.any():
                distance = ((out.posterior.mean[mask].float() - target.float()) ** 2).sum(-1)
                penalty = penalty + torch.relu(distance - cfg.constraint_threshold).sum()
        penalty = cfg.constraint_weight * penalty / len(x)
        out.loss = out.loss + penalty
        out.extra["constraint"] = penalty.detach()
        return out

    def _raw_label_index(self, name: str) -> int:
        names = self.constraint_label_names
        if name not in names:
            raise VaekitError(f"constraint label {name!r}: unknown; the data's labels are {', '.join(names)}")
        return names.index(name)

    @property
    def constraint_label_names(self) -> tuple[str, ...]:
        return self.config.label_names or getattr(self, "data_label_names", ())

    def _constraint_batch(self, x: TextBatch) -> TextBatch:
        batch = getattr(self, "_constraint_cache", None)
        if batch is None:
            texts = list(self.config.constraint_texts)
            labels = list(self.config.constraint_labels) if self.conditional else None
            # a text-embedding model conditions each constraint text on its own embedding, as for any text
            conditions = texts if self.config.condition_dim else None
            batch = self._constraint_cache = self.batch(texts, labels, infer=False, conditions=conditions)
        return to_device(batch, x.ids.device)  # every tensor field moves: ids, lengths, labels, tags, cond

    # --- conditions (a conditional VAE when config.label_names is set) ---------------------------
    @property
    def conditional(self) -> bool:
        return self.config.num_labels > 0 or self.config.num_tags > 0 or self.config.condition_dim > 0

    def attach_conditions(self, directory: Path) -> None:
        """The embedder of condition texts: the run's word vectors, or the named sentence encoder."""
        from ..conditions import WORD_VECTORS, SentenceEmbedder, WordVectors

        if not self.config.condition_dim:
            return
        if self.config.condition_encoder == WORD_VECTORS:
            self.condition_embedder = WordVectors.load(Path(directory))
        else:
            self.condition_embedder = SentenceEmbedder(self.config.condition_encoder)

    def embed_conditions(self, texts: list[str]) -> torch.Tensor:
        """(n, E) condition vectors of condition texts (a sentence, or keywords)."""
        if not self.config.condition_dim:
            raise VaekitError("--condition-text/--keywords: this model was trained without a condition embedding; "
                              "train it with --condition-embedding")
        if self.condition_embedder is None:
            raise VaekitError("this model's condition embedder is not attached; load it with vaekit.load(RUN)")
        vectors = torch.from_numpy(np.asarray(self.condition_embedder(list(texts)), dtype=np.float32))
        if vectors.shape[1] != self.config.condition_dim:
            raise VaekitError(f"condition vectors have {vectors.shape[1]} dimensions, the model was trained with "
                              f"{self.config.condition_dim}")
        return vectors

    @property
    def labelled(self) -> bool:
        return self.config.num_labels > 0

    def tags_vector(self, tags) -> torch.Tensor:
        """Multi-hot (T,) of tag names; an unknown tag is an error that lists the known ones."""
        names = self.config.tag_names
        if not names:
            raise VaekitError("--tags: this model was trained without tags; train it with --conditional and "
                              "--tags-column")
        vector = torch.zeros(len(names), device="cpu")  # built element by element: on the CPU, moved with its batch
        for tag in tags:
            if tag not in names:
                shown = ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")
                raise VaekitError(f"tag {tag!r}: unknown; this model knows {shown}")
            vector[names.index(tag)] = 1.0
        return vector

    def condition(self, labels: torch.Tensor | None, tags: torch.Tensor | None, n: int,
                  cond: torch.Tensor | None = None, device: torch.device | None = None) -> torch.Tensor:
        """c (n, C) on ``device`` (default: the model's): the one-hot label (labelled models) then the multi-hot
        tags (tagged models; none: zeros) and the condition embedding. Parts made elsewhere (label names, tag
        lists and condition embedders give CPU tensors) are moved there."""
        device = self.device if device is None else device
        labels, tags, cond = (None if t is None else t.to(device) for t in (labels, tags, cond))
        parts = []
        if self.labelled:
            if labels is None:
                raise VaekitError("this conditional model needs a label (--label)")
            parts.append(self.one_hot(labels))
        if self.config.num_tags:
            parts.append(tags.float() if tags is not None else torch.zeros(n, self.config.num_tags, device=device))
        if self.config.condition_dim:
            if cond is None:
                raise VaekitError("this model is conditioned on a text embedding: give --condition-text or --keywords")
            parts.append(cond.float())
        return torch.cat(parts, dim=-1)

    def condition_codes(self, z: torch.Tensor, label: str | None = None, tags=None,
                        generator: torch.Generator | None = None, condition_text: str | None = None) -> torch.Tensor:
        """Decoder codes for z (n, d) written with ``label`` (default: one drawn uniformly), ``tags`` and the
        embedding of ``condition_text``."""
        if condition_text is not None and not self.config.condition_dim:
            self.embed_conditions([condition_text])  # names the problem
        if not self.conditional:
            if label is not None:
                self.label_index(label)  # names the problem
            if tags:
                self.tags_vector(tags)
            return z
        n = len(z)
        labels = None
        if self.labelled:
            labels = (torch.full((n,), self.label_index(label), dtype=torch.long, device=z.device) if label is not None
                      else torch.randint(self.config.num_labels, (n,), generator=generator,  # on the generator's device
                                         device=generator.device if generator is not None else z.device))
        elif label is not None:
            self.label_index(label)
        tag_rows = self.tags_vector(tags).expand(n, -1) if tags else None
        cond = self.embed_conditions([condition_text]).expand(n, -1) if condition_text is not None else None
        return self.decoder_code(z, labels, tag_rows, cond)

    def label_index(self, label: str) -> int:
        """The index of ``label``; an unknown one is an error that lists the known ones."""
        names = self.config.label_names
        if not names:
            raise VaekitError("--label: this model was trained without labels; train it with --conditional "
                              "and --label-column")
        if label not in names:
            raise VaekitError(f"label {label!r}: unknown; this model knows {', '.join(names)}")
        return names.index(label)

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """(b,) label indices -> (b, C) float one-hot conditions."""
        return F.one_hot(labels.long(), self.config.num_labels).float()

    def decoder_code(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                     tags: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        """What the decoder reads: z (b, d), with the condition c beside it for a conditional model."""
        if not self.conditional:
            return z
        return torch.cat([z, self.condition(labels, tags, len(z), cond, z.device).to(z.dtype)], dim=-1)

    def _condition_of(self, x: TextBatch) -> torch.Tensor:
        return self.condition(self._labels_of(x) if self.labelled else None, x.tags, len(x), x.cond, x.ids.device)

    def _labels_of(self, x: TextBatch) -> torch.Tensor:
        if x.labels is None:
            raise VaekitError("this conditional model needs each text's label (give labels to model.batch, or "
                              "--label/--source-label)")
        return x.labels

    @torch.no_grad()
    def infer_labels(self, x: TextBatch) -> torch.Tensor:
        """The most likely label of each text by Bayes' rule with a uniform prior: argmax_c of the ELBO
        log p(x | mu(x, c), c) - KL(q(z | x, c) || p(z)), one pass per label."""
        scores = []
        for c in range(self.config.num_labels):
            labels = torch.full((len(x),), c, dtype=torch.long, device=x.ids.device)
            labelled = dataclasses.replace(x, labels=labels)  # tags kept
            posterior = self.encode(labelled)
            scores.append(self.log_likelihood(labelled, posterior.mean[None])[0] - posterior.kl().sum(-1))
        return torch.stack(scores, dim=-1).argmax(-1)
