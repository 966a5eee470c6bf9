"""Contract tests for TextVAE, and that variations really depend on the input text."""
import json

import pytest
import torch

import vaekit
from vaekit import TextVAE, TextVAEConfig, TrainConfig, VaekitError
from vaekit.data.text import collate
from vaekit.data.tokenizer import EOS_ID, TextTokenizer, TokenizerConfig
from vaekit.generate import decode_ids
from vaekit.texts import train_text

from conftest import CATS, FIRMS, PLACES, TIMES, fit_steps, tiny_text_overrides, two_topic_sentences


def tiny(rnn="gru", **overrides):
    tok = TextTokenizer.train(two_topic_sentences(), TokenizerConfig(vocab_size=100))
    torch.manual_seed(0)
    config = TextVAEConfig(vocab_size=tok.vocab_size, rnn=rnn, **{**tiny_text_overrides(), **overrides})
    return TextVAE(config, tok)


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("tie", [False, True])
def test_shapes_finite_loss_backward(rnn, tie):
    model = tiny(rnn, tie_embeddings=tie, encoder_hidden=(8, 6), encoder_dense=(5,), decoder_layers=2)
    batch = model.batch(["the lazy cat sat on the warm mat.", "shares of banks fell."])
    posterior = model.encode(batch)
    assert posterior.mean.shape == (2, 4)
    assert model.log_likelihood(batch, posterior.sample_k(3)).shape == (3, 2)
    out = model.loss(batch)
    assert torch.isfinite(out.loss) and out.tokens == int(batch.lengths.sum()) + 2
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert len(model.sample(3)) == 3 and len(model.interpolate("the cat", "shares fell", steps=4)) == 4


def test_padding_never_counts():
    model = tiny().eval()
    short = model.batch(["the old cat sat."])
    padded = collate([short.ids[0].numpy(), torch.arange(4, 30).numpy()])  # a long neighbour forces padding
    z = torch.zeros(1, 2, 4)
    alone = model.log_likelihood(short, z[:, :1])
    together = model.log_likelihood(padded, z)
    torch.testing.assert_close(alone[0, 0], together[0, 0])


def test_save_load_bit_exact_with_tokenizer(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    loaded = vaekit.load(tmp_path / "m")
    assert isinstance(loaded, TextVAE) and not loaded.training and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert loaded.tokenizer.encode("the cat") == model.tokenizer.encode("the cat")


def test_missing_or_foreign_tokenizer_is_named(tmp_path):
    tiny().save_pretrained(tmp_path / "m")
    other = TextTokenizer.train(["completely different words here"], TokenizerConfig())
    other.save(tmp_path / "m" / "tokenizer.json")
    with pytest.raises(VaekitError, match="tokenizer.json: has 8 tokens but the model was trained with a vocabulary of"):
        vaekit.load(tmp_path / "m")
    (tmp_path / "m" / "tokenizer.json").unlink()
    with pytest.raises(VaekitError, match="tokenizer.json: file is missing"):
        vaekit.load(tmp_path / "m")


def test_another_runs_tokenizer_of_the_same_size_is_refused_by_name(tmp_path):
    """Issue 33, defect 3: the size check let a same-size vocabulary through, and the model decoded its words."""
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    fresh = " ".join(f"w{i}" for i in range(500))  # more words than the model's vocabulary: capped at its size
    other = TextTokenizer.train([fresh] * 3, TokenizerConfig(vocab_size=model.config.vocab_size))
    assert other.vocab_size == model.config.vocab_size
    other.save(tmp_path / "m" / "tokenizer.json")
    with pytest.raises(VaekitError, match=r"tokenizer.json: is not the tokenizer this model was trained with "
                                          r"\(fingerprint [0-9a-f]{16}, trained with [0-9a-f]{16}\)"):
        vaekit.load(tmp_path / "m")
    model.tokenizer.save(tmp_path / "m" / "tokenizer.json")
    assert vaekit.load(tmp_path / "m").tokenizer.encode("the cat") == model.tokenizer.encode("the cat")


def test_seeded_determinism():
    losses = []
    for _ in range(2):
        model = tiny()
        losses.append(fit_steps(model, model.batch(two_topic_sentences()[:8]), steps=3, lr=1e-2, seed=1).loss.item())
    assert losses[0] == losses[1]


def test_overfits_one_batch_and_iw_bound_holds():
    model = tiny(latent_dim=8)
    texts = two_topic_sentences()[::9]  # 8 distinct sentences
    batch = model.batch(texts)
    # a small KL weight: these texts differ in two words, too little to pay 1x KL for
    fit_steps(model, batch, steps=300, lr=1e-2, kl_weight=0.05)
    model.eval()
    assert model.reconstruct(texts) == texts
    bounds = model.iw_nll(batch, k=50, generator=torch.Generator().manual_seed(0))
    assert bounds["iw_nll"].mean() <= bounds["neg_elbo"].mean()


def test_banned_tokens_never_appear():
    model = tiny().eval()
    banned = model.tokenizer.token_ids(["the", "cat", "shares"])
    for strategy in ("greedy", "sample", "beam"):
        ids, _ = decode_ids(model, torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), strategy=strategy,
                            banned=banned, generator=torch.Generator().manual_seed(1), max_tokens=12)
        assert not any(i in banned for row in ids for i in row)


@pytest.mark.parametrize("rnn, eos_bias", [("gru", 0.5), ("lstm", 0.05)])
def test_batched_decoding_matches_one_code_at_a_time(rnn, eos_bias):
    """Finished texts leave the decoding batch; the others must decode as they would alone. A raised <eos>
    bias makes the untrained decoder stop at different steps for different codes."""
    model = tiny(rnn, decoder_layers=2).eval()
    with torch.no_grad():
        model.decoder.output.bias[EOS_ID] += eos_bias
    z = 3 * torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    ids, scores = decode_ids(model, z, strategy="greedy", max_tokens=15)
    assert len({len(row) for row in ids}) > 2  # the rows finish at different steps
    for i in range(len(z)):
        alone, score = decode_ids(model, z[i:i + 1], strategy="greedy", max_tokens=15)
        assert alone[0] == ids[i] and score[0] == pytest.approx(scores[i], abs=1e-3)


@pytest.fixture(scope="module")
def trained_two_topics(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "c.txt"
    path.write_text("\n".join(two_topic_sentences() * 4))
    # the topic is one bit, which a decoder can also just guess: free bits and word dropout keep it in z
    run = train_text(path, tmp_path_factory.mktemp("run") / "r", model_overrides={**tiny_text_overrides(), "word_dropout": 0.3},
                     training=TrainConfig(epochs=25, batch_size=16, lr=1e-2, precision="fp32", kl_schedule="linear",
                                          free_bits=0.5))
    return run


def test_variations_vary_that_text(trained_two_topics):
    model = trained_two_topics.model
    cat_words, market_words = set(CATS + PLACES + ["cat", "mat"]), set(FIRMS + TIMES + ["shares", "trading"])
    for text, own, other in (("the lazy cat sat on the warm mat.", cat_words, market_words),
                             ("shares of miners fell in late trading today.", market_words, cat_words)):
        variations = model.vary(text, n=5, seed=0, temperature=1.0)
        assert variations and len({v.text for v in variations}) == len(variations)
        assert all(v.text != text for v in variations)
        for v in variations:
            words = set(v.text.replace(".", " ").split())
            assert len(words & own) > len(words & other), v.text
        scores = [v.score for v in variations]
        assert scores == sorted(scores, reverse=True)
        # the design documents' name: the same variations, as strings
        assert model.generate_variations(text, 5, seed=0, temperature=1.0) == [v.text for v in variations]


def test_vary_ranks_by_similarity_when_asked(trained_two_topics):
    """rank="similarity": 3n candidates drawn, the n most similar to the input kept, most similar first, and no
    constraint counts (nothing was constrained); the pretrained backbone ranks so by default (measured)."""
    from vaekit.models import LMTextVAE

    model = trained_two_topics.model
    text = "the lazy cat sat on the warm mat."
    asked = []

    def by_length(reference, candidates):  # a stand-in for the sentence encoder: shorter is "more similar"
        asked.append(len(candidates))
        return [1.0 / len(c) for c in candidates]

    variations = model.vary(text, n=3, seed=0, temperature=1.0, rank="similarity", similarity=by_length)
    assert len(variations) == 3 and asked and asked[0] > 3
    assert variations.similarities == sorted(variations.similarities, reverse=True)
    assert variations.similarities == [1.0 / len(v.text) for v in variations]
    assert variations.drawn is None
    assert model.vary(text, n=3, seed=0, temperature=1.0, rank="likelihood").similarities is None
    with pytest.raises(VaekitError, match="--rank 'best': choose likelihood or similarity"):
        model.vary(text, rank="best")
    assert model.default_rank == "likelihood" and LMTextVAE.default_rank == "similarity"


def test_vary_input_checks(trained_two_topics, caplog):
    model = trained_two_topics.model
    with pytest.raises(VaekitError, match="cannot vary an empty text"):
        model.vary("   ")
    # reconstruct and interpolate refuse an empty text too, rather than decoding padding
    with pytest.raises(VaekitError, match=r"texts\[1\] is empty: cannot reconstruct"):
        model.reconstruct(["the cat", " "])
    with pytest.raises(VaekitError, match="b is empty: cannot interpolate"):
        model.interpolate("the cat", "")
    with pytest.raises(VaekitError, match="-n 0"):
        model.vary("the cat", n=0)
    model.vary("zebras juggle quantum marmalade", n=1, seed=0)
    assert "unknown to this model's vocabulary" in caplog.text
    model.vary("the cat sat", n=500, seed=0)
    assert "capped at 100" in caplog.text


def test_long_text_is_varied_unit_by_unit(trained_two_topics):
    model = trained_two_topics.model
    long_text = " ".join(["The lazy cat sat on the warm mat."] * 6 + ["Shares of banks fell in early trading today."] * 6)
    assert model.units(long_text) == ["The lazy cat sat on the warm mat."] * 6 + ["Shares of banks fell in early trading today."] * 6
    variations = model.vary(long_text, n=2, seed=0)
    assert variations and all(v.text.count(".") >= 10 for v in variations)


def test_training_records_monitoring(trained_two_topics):
    run_dir = trained_two_topics.run_dir
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if '"val"' in l]
    for key in ("loss", "rec", "kl", "perplexity", "mutual_information", "active_units"):
        assert key in rows[-1]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert "prior samples:" in (run_dir / "samples.txt").read_text()
    assert (run_dir / "tokenizer.json").is_file() and (run_dir / "data" / "train.ids.npy").is_file()


def test_nucleus_sampling_matches_the_sorted_definition():
    """The sort-free sampler (inverse CDF + acceptance) draws from the nucleus renormalised, exactly."""
    from vaekit.generate import _nucleus

    probs = torch.tensor([0.05, 0.4, 0.02, 0.25, 0.2, 0.08])
    logits = probs.log().expand(20000, -1).clone()
    draws, log_p = _nucleus(logits, top_p=0.8, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(log_p, probs.log()[draws])
    # sorted: 0.4, 0.25, 0.2 (cumulative 0.85 >= 0.8: the crossing token is kept); the rest never appear
    expected = torch.zeros(6)
    expected[[1, 3, 4]] = torch.tensor([0.4, 0.25, 0.2]) / 0.85
    observed = torch.bincount(draws, minlength=6).float() / len(draws)
    assert observed[[0, 2, 5]].sum() == 0
    assert torch.allclose(observed, expected, atol=0.015)
    # top_p = 1 is plain sampling from the whole distribution
    everything, _ = _nucleus(logits, top_p=1.0, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(torch.bincount(everything, minlength=6).float() / len(everything), probs, atol=0.015)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keeps_1_minus_p_and_the_mean(p):
    """vaekit's dropout (masks from random bits): each element kept with probability 1 - p, independently of
    its position, kept ones scaled so the mean is unchanged; the identity in eval mode."""
    from vaekit.nn.text import Dropout

    torch.manual_seed(0)
    drop = Dropout(p)
    x = torch.ones(1000, 1001)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.003
    assert all(abs(kept[:, i::4].float().mean().item() - (1 - p)) < 0.005 for i in range(4))  # each 16-bit lane
    assert abs(y.mean().item() - 1) < 0.01 and torch.allclose(y[kept], y[kept][0])
    assert torch.equal(drop.eval()(x), x)


def test_token_nll_matches_cross_entropy_values_and_gradients():
    """The CPU cross-entropy (vaekit.nn.text.token_nll) against F.cross_entropy, in fp64 and with bf16 logits
    (whose gradient comes back in bf16)."""
    import torch.nn.functional as F
    from vaekit.nn.text import token_nll

    torch.manual_seed(0)
    logits = torch.randn(150, 37, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 37, (150,))
    weights = torch.rand(150, dtype=torch.float64)
    ours = token_nll(logits, targets)
    (grad,) = torch.autograd.grad((ours * weights).sum(), logits)
    ref = F.cross_entropy(logits, targets, reduction="none")
    (ref_grad,) = torch.autograd.grad((ref * weights).sum(), logits)
    torch.testing.assert_close(ours, ref.float())
    torch.testing.assert_close(grad, ref_grad)
    low = logits.detach().bfloat16().requires_grad_()
    nll = token_nll(low, targets)
    assert nll.dtype == torch.float32
    (low_grad,) = torch.autograd.grad((nll * weights.float()).sum(), low)
    assert low_grad.dtype == torch.bfloat16
    torch.testing.assert_close(low_grad.float(), ref_grad.float(), atol=1e-2, rtol=1e-2)


def test_bf16_inference_sees_weights_changed_by_fused_adam():
    """The decoder keeps a bf16 copy of its output layer for inference. Fused Adam changes parameters in place
    without bumping their version counter, so between training steps (validation each epoch, generation after
    training in the same process) that copy must not outlive the weights it was cast from."""
    from vaekit.precision import autocast

    model = tiny()
    batch = model.batch(["the lazy cat sat on the warm mat.", "shares of banks fell."])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05, fused=True)

    def eval_loss(m):
        m.eval()
        with torch.no_grad(), autocast("bf16"):
            return m.loss(batch, generator=torch.Generator().manual_seed(0)).rec.item()

    eval_loss(model)  # fills the cache
    for _ in range(3):
        model.train()
        out = model.loss(batch, generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
    trained = eval_loss(model)  # as the Trainer validates: grads still set
    model.zero_grad(set_to_none=True)
    fresh = tiny()
    fresh.load_state_dict(model.state_dict())
    assert trained == pytest.approx(eval_loss(fresh), rel=1e-6)
    assert eval_loss(model) == pytest.approx(trained, rel=1e-6)  # no grads: the cache, refilled after train()


@pytest.mark.parametrize("tie", [False, True])
def test_inference_output_layer_is_kept_across_decoding_calls_and_matches_f_linear(tie):
    """At inference under bf16 autocast the output layer runs on a kept bf16 copy of its weight (on CPUs with
    oneDNN, in oneDNN's blocked layout): the same logits as F.linear on the bf16 weight and -log p within bf16's
    rounding of p, whatever the row count; the copy outlives the eval()/train(False) switch each decoding call makes, and train() drops it."""
    import torch.nn.functional as F
    from vaekit.nn.text import token_nll
    from vaekit.precision import autocast

    model = tiny(tie_embeddings=tie).eval()
    decoder = model.decoder
    targets = torch.randint(0, model.config.vocab_size, (70,))
    for rows in (1, 7, 70):
        hidden = torch.randn(rows, model.config.decoder_hidden)
        with torch.no_grad(), autocast("bf16"):
            logits = model.token_logits(hidden)
            nll = decoder.token_nll(hidden, targets[:rows], model.embedding.weight)
            if tie:
                inputs, weight, bias = decoder.to_embedding(hidden), model.embedding.weight, None
            else:
                inputs, weight, bias = hidden, decoder.output.weight, decoder.output.bias
            expected = F.linear(inputs.bfloat16(), weight.bfloat16(), None if bias is None else bias.bfloat16())
        torch.testing.assert_close(logits.float(), expected.float())
        # -log p from a bf16 softmax (see _softmax_nll): p within 2^-9 relative, -log p within ~0.002 nats
        torch.testing.assert_close(nll, token_nll(expected, targets[:rows]), atol=4e-3, rtol=0)
    kept = decoder._bf16_output
    assert kept is not None
    model.eval()  # what every decoding call does, and then train(was_training)
    model.train(False)
    with torch.no_grad(), autocast("bf16"):
        model.token_logits(hidden)
    assert decoder._bf16_output is kept
    model.train()
    assert decoder._bf16_output is None


def test_adaptive_softmax_is_an_exact_distribution_matching_torch():
    """--output adaptive (Grave et al. 2017): the decoder's log-probabilities over the whole vocabulary sum to 1,
    its per-token log p(target) agrees with them and with torch's AdaptiveLogSoftmaxWithLoss (values and
    gradients, fp64), and under bf16 autocast the per-token values stay fp32 and close."""
    from vaekit.nn.text import RNNDecoder
    from vaekit.precision import autocast

    torch.manual_seed(0)
    decoder = RNNDecoder(16, "gru", 32, 1, 4, 50, 0.0, False, output="adaptive", cutoffs=(10, 30)).double()
    hidden = torch.randn(70, 32, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (70,))
    ours = decoder.target_log_prob(hidden, targets)
    full = decoder.logits(hidden, None)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(70, dtype=full.dtype))
    torch.testing.assert_close(full.gather(1, targets[:, None]).squeeze(1), ours)
    ref = decoder.adaptive(hidden, targets).output
    torch.testing.assert_close(ours.double(), ref, atol=1e-6, rtol=1e-6)
    (grad,) = torch.autograd.grad(ours.sum(), hidden)
    (ref_grad,) = torch.autograd.grad(ref.sum(), hidden)
    torch.testing.assert_close(grad, ref_grad.to(grad.dtype), atol=1e-5, rtol=1e-5)
    decoder = decoder.float()
    with autocast("bf16"):
        low = decoder.target_log_prob(hidden.detach().float(), targets)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low.double(), ref.detach(), atol=0.1, rtol=0.02)


def test_adaptive_text_vae_trains_saves_and_loads(tmp_path):
    model = tiny(output="adaptive", adaptive_cutoffs=(10, 25))
    assert model.decoder.output is None and model.decoder.adaptive is not None
    batch = model.batch(["the lazy cat sat on the warm mat.", "shares of banks fell."])
    out = model.loss(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert len(model.sample(3)) == 3 and len(model.vary("the lazy cat sat on the mat.", n=2, strategy="beam")) >= 1
    model.save_pretrained(tmp_path / "m")
    loaded = vaekit.load(tmp_path / "m")
    assert loaded.config == model.config and loaded.config.adaptive_cutoffs == (10, 25)
    z = torch.zeros(1, 2, 4)
    torch.testing.assert_close(loaded.log_likelihood(batch, z), model.eval().log_likelihood(batch, z))


@pytest.mark.parametrize("bad", [dict(output="adaptive", tie_embeddings=True), dict(output="adaptive", adaptive_cutoffs=(30, 20)),
                                 dict(output="fancy")])
def test_bad_output_layer_settings_are_named(bad):
    with pytest.raises(VaekitError, match="adaptive|output"):
        TextVAEConfig(vocab_size=100, **bad)


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("hidden", [(6,), (7, 5)])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_encoder_without_packing_is_the_packed_encoder(rnn, hidden, bidirectional):
    """On CPUs the encoder runs each direction over padded tensors (the backward one over each text reversed
    within its length) instead of a PackedSequence: same summaries and gradients, any lengths and padding, with
    both directions or the forward one alone."""
    from vaekit.nn.text import BiRNNEncoder

    torch.manual_seed(0)
    encoder = BiRNNEncoder(4, rnn, hidden, (), 3, 0.0, bidirectional=bidirectional).double()
    x = torch.randn(5, 9, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([9, 1, 4, 0, 7])  # 0: an empty text, read as one (padding) token as before
    unpacked = encoder._summary_unpacked(x, lengths.clamp(min=1))
    packed = encoder._summary_packed(x, lengths.clamp(min=1))
    torch.testing.assert_close(unpacked, packed)
    assert packed.shape == (5, hidden[-1] * (2 if bidirectional else 1))
    weights = torch.randn_like(packed)
    grads = [torch.autograd.grad((s * weights).sum(), [x, *encoder.layers.parameters()]) for s in (unpacked, packed)]
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref)


def test_gru_layer_is_nn_gru_values_and_gradients():
    """vaekit's CPU GRU layer (hand-written backward through time, both directions side by side) against
    nn.GRU: outputs and every gradient in fp64, gradcheck on a tiny case, and bf16 autocast close to them."""
    from vaekit.nn.gru import _GRU, gru

    torch.manual_seed(0)
    t, b, i, h = 6, 3, 5, 4
    layer = torch.nn.GRU(i, h, bidirectional=True).double()
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    x = torch.randn(2, t, b, i, dtype=torch.float64, requires_grad=True)  # a different input per direction
    h0 = torch.randn(2, b, h, dtype=torch.float64, requires_grad=True)
    weights = [torch.stack([getattr(layer, f"{n}_l0{s}") for s in ("", "_reverse")]) for n in names]
    ours = gru(x, h0, *weights)
    ref = torch.stack([torch._VF.gru(x[k], h0[k:k + 1], [getattr(layer, f"{n}_l0{s}") for n in names],
                                     True, 1, 0.0, True, False, False)[0] for k, s in enumerate(("", "_reverse"))])
    torch.testing.assert_close(ours, ref)
    upstream = torch.randn_like(ref)
    inputs = [x, h0, *layer.parameters()]
    grads = [torch.autograd.grad((out * upstream).sum(), inputs) for out in (ours, ref)]
    for a, r in zip(*grads):
        torch.testing.assert_close(a, r)
    w_ih, w_hh, b_ih, b_hh = (w.detach().clone() for w in weights)
    small = (x[:, :3, :2, :2], h0[:, :2], w_ih[:, :, :2], w_hh, b_ih, b_hh)  # 3 steps, batch 2, 2 inputs
    assert torch.autograd.gradcheck(gru, tuple(a.detach().clone().requires_grad_() for a in small))
    for recurrent in (torch.float32, torch.bfloat16):  # each step's product in fp32 (small hidden) or bf16
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = _GRU.apply(x.float(), h0.float(), *[w.float() for w in weights], torch.bfloat16, recurrent)
        assert low.dtype == torch.float32  # states and gates in fp32
        torch.testing.assert_close(low.double(), ref, atol=3e-2, rtol=0)
        (low_grads,) = [torch.autograd.grad((low * upstream.float()).sum(), inputs)]
        for a, r in zip(low_grads, grads[1]):
            torch.testing.assert_close(a.double(), r, atol=5e-2, rtol=5e-2)


def test_decoder_trains_through_the_gru_layer_as_through_nn_gru():
    """A two-layer GRU decoder: with gradients on a CPU its step runs vaekit's GRU layer; the same outputs, final
    states and gradients as the decoder's nn.GRU run directly (PyTorch's own kernels)."""
    from vaekit.nn.text import RNNDecoder

    torch.manual_seed(0)
    decoder = RNNDecoder(5, "gru", 6, 2, 3, 20, 0.0, False).double()
    embedded = torch.randn(4, 7, 5, dtype=torch.float64, requires_grad=True)
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    out, state = decoder.step(embedded, z, decoder.initial_state(z))
    x = torch.cat([embedded, z[:, None, :].expand(-1, 7, -1)], dim=-1)
    ref_out, ref_state = decoder.rnn(x, decoder.initial_state(z))  # nn.GRU itself
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(state, ref_state)
    upstream = torch.randn_like(out)
    inputs = [embedded, z, *decoder.parameters()]
    grads = [torch.autograd.grad((o * upstream).sum() + s.sum(), inputs, allow_unused=True)
             for o, s in ((out, state), (ref_out, ref_state))]
    for a, r in zip(*grads):
        if r is not None:
            torch.testing.assert_close(a, r)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_nll_matches_linear_then_cross_entropy(bias):
    """The output layer fused with its cross-entropy (vaekit.nn.text.linear_nll) against F.linear and
    F.cross_entropy: values and gradients for x, W and b with a different upstream gradient per row, more rows
    than one block, in fp64; under bf16 autocast close to that."""
    import torch.nn.functional as F
    from vaekit.nn.text import linear_nll

    torch.manual_seed(0)
    x = torch.randn(70, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(37, 8, dtype=torch.float64, requires_grad=True)
    b = torch.randn(37, dtype=torch.float64, requires_grad=True) if bias else None
    targets = torch.randint(0, 37, (70,))
    per_row = torch.rand(70, dtype=torch.float64)
    inputs = [x, weight] + ([b] if bias else [])
    ours = linear_nll(x, weight, b, targets)
    ref = F.cross_entropy(F.linear(x, weight, b), targets, reduction="none")
    torch.testing.assert_close(ours, ref.float())
    grads = torch.autograd.grad((ours * per_row).sum(), inputs)
    ref_grads = torch.autograd.grad((ref * per_row).sum(), inputs)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = linear_nll(x.float(), weight.float(), None if b is None else b.float(), targets)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low.double(), ref, atol=0.1, rtol=0.02)


def test_biased_linear_equals_f_linear():
    """The training output layer's bf16 product with its bias (oneDNN adds the bias inside the product on CPUs):
    the same values as F.linear, whatever the row count; without a bias or outside bf16 it is F.linear."""
    import torch.nn.functional as F
    from vaekit.nn.text import _biased_linear

    torch.manual_seed(0)
    weight, bias = torch.randn(301, 40).bfloat16(), torch.randn(301).bfloat16()
    for rows in (1, 7, 64, 130):
        x = torch.randn(rows, 40).bfloat16()
        assert torch.equal(_biased_linear(x, weight, bias), F.linear(x, weight, bias))
        assert torch.equal(_biased_linear(x, weight, None), F.linear(x, weight))
        assert torch.equal(_biased_linear(x.float(), weight.float(), bias.float()), F.linear(x.float(), weight.float(), bias.float()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nll_of_a_far_behind_target_is_exact(dtype):
    """A target whose logit is hundreds of nats behind the row's top has a probability that underflows (or is
    too small to trust); linear_nll and token_nll compute that row's -log p again from the logits, so it stays
    exact, and the gradients stay finite."""
    import torch.nn.functional as F
    from vaekit.nn.text import linear_nll, token_nll

    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=dtype, requires_grad=True)
    weight = torch.tensor([[300.0, 0.0], [0.0, 1.0], [-200.0, 2.0]], dtype=dtype, requires_grad=True)
    targets = torch.tensor([2, 1, 0])  # row 0: 500 nats behind; row 1: ordinary; row 2: the top
    ref = F.cross_entropy(F.linear(x.double(), weight.double()), targets, reduction="none")
    logits = F.linear(x.detach(), weight.detach()).requires_grad_()
    for ours, inputs in ((linear_nll(x, weight, None, targets), (x, weight)), (token_nll(logits, targets), (logits,))):
        assert torch.isfinite(ours).all()
        # bf16 keeps p to 2^-9 relative, so -log p to about 0.002 nats; the far row is exact either way
        torch.testing.assert_close(ours.double(), ref, atol=4e-3 if dtype == torch.bfloat16 else 1e-5, rtol=1e-5)
        assert abs(ours[0].item() - ref[0].item()) < 1e-3 * ref[0].item()
        assert all(torch.isfinite(g).all() for g in torch.autograd.grad(ours.sum(), inputs))


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("auto", 0.02)])
def test_vary_scores_its_texts_while_decoding(trained_two_topics, monkeypatch, precision, tolerance):
    """Sampled variations are scored as they are written (a teacher-forced copy of each row decodes under the
    posterior mean): the same mean log p per token as scoring the finished texts afterwards (score_texts), also
    for texts cut at max_tokens, whose score ends with log p(<eos>) as a scored text's does. In fp32 to float
    rounding; in bf16 (where the CPU has it) the step-by-step and whole-text decoders round differently."""
    from vaekit.generate import _decode, score_texts

    monkeypatch.setenv("VAEKIT_DECODE_PRECISION", precision)
    model = trained_two_topics.model
    text = "the lazy cat sat on the warm mat."
    mean = model.encode(model.batch([text])).mean[0]
    variations = model.vary(text, n=5, seed=0, temperature=1.0)
    expected = score_texts(model, [v.text for v in variations], mean)
    assert [v.score for v in variations] == pytest.approx(expected, abs=tolerance)
    z = torch.randn(6, model.latent_dim, generator=torch.Generator().manual_seed(1))
    for max_tokens in (3, 30):  # most rows cut, none cut
        ids, _, under = _decode(model, z, "sample", max_tokens=max_tokens, generator=torch.Generator().manual_seed(0),
                                score_code=mean)
        texts = [model.tokenizer.decode(row) for row in ids]
        expected = score_texts(model, texts, mean)
        assert [u / (len(row) + 1) for u, row in zip(under, ids)] == pytest.approx(expected, abs=tolerance)
