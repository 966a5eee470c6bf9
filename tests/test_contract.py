"""The model contract, once for every registered model type: a model gets these tests by being registered
(vaekit.models.register) and given a tiny factory here. Each factory returns (model, a batch of inputs)."""
import pytest
import torch

from conftest import blobs, tiny_model, tiny_text_overrides, two_topic_sentences
from vaekit import DiagonalGaussian, load
from vaekit.models import MODEL_TYPES, modality_of


def _image():
    model = tiny_model()
    return model, torch.from_numpy(blobs(8)).float()[:, None] / 255


def _text():
    from vaekit.data.tokenizer import TextTokenizer, TokenizerConfig
    from vaekit.models.text import TextVAE, TextVAEConfig

    tokenizer = TextTokenizer.train(two_topic_sentences(), TokenizerConfig(vocab_size=200))
    torch.manual_seed(0)
    model = TextVAE(TextVAEConfig(vocab_size=tokenizer.vocab_size, **tiny_text_overrides()), tokenizer)
    return model, model.batch(two_topic_sentences()[::9])


def _lm_text():
    from tiny_lm import tiny_lm_text_vae

    model = tiny_lm_text_vae()
    return model, model.batch(two_topic_sentences()[::9])


FACTORIES = {"image_vae": _image, "text_vae": _text, "lm_text_vae": _lm_text}


def test_every_registered_model_type_has_a_contract_factory():
    assert sorted(MODEL_TYPES) == sorted(FACTORIES)


@pytest.fixture(params=sorted(MODEL_TYPES))
def model_and_batch(request):
    return FACTORIES[request.param]()


def test_encode_returns_a_posterior_and_the_loss_trains(model_and_batch):
    model, batch = model_and_batch
    model.train()
    posterior = model.encode(batch)
    assert isinstance(posterior, DiagonalGaussian)
    assert posterior.mean.shape == (len(batch), model.latent_dim)
    out = model.loss(batch, kl_weight=0.5, free_bits=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained)


def test_sample_with_a_seed_repeats_and_takes_a_generator(model_and_batch):
    model, _ = model_and_batch
    model.eval()
    first, again = model.sample(3, seed=1), model.sample(3, seed=1)
    assert len(first) == 3
    same = torch.equal(first, again) if torch.is_tensor(first) else list(first) == list(again)
    assert same
    by_generator = model.sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, by_generator) if torch.is_tensor(first) else list(first) == list(by_generator)
    with pytest.raises(Exception, match="seed or a generator"):
        model.sample(3, seed=1, generator=torch.Generator())


def test_reconstruct_interpolate_and_iw_nll(model_and_batch):
    model, batch = model_and_batch
    model.eval()
    if modality_of(model) == "text":
        texts = two_topic_sentences()[:2]
        assert len(model.reconstruct(texts)) == 2
        assert len(model.interpolate(texts[0], texts[1], steps=4)) == 4
    else:
        assert model.reconstruct(batch).shape == batch.shape
        assert model.interpolate(batch[:1], batch[1:2], steps=4).shape == (4, *batch.shape[1:])
    parts = model.iw_nll(batch, k=4, generator=torch.Generator().manual_seed(0))
    assert parts["iw_nll"].shape == (len(batch),) and torch.isfinite(parts["iw_nll"]).all()


def test_save_load_round_trip_is_bit_exact(model_and_batch, tmp_path):
    model, batch = model_and_batch
    model.save_pretrained(tmp_path / "run")
    loaded = load(tmp_path / "run")
    assert type(loaded) is type(model) and not loaded.training
    mine, theirs = model.state_dict(), loaded.state_dict()
    assert sorted(mine) == sorted(theirs)
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    model.eval()
    assert torch.equal(model.encode(batch).mean, loaded.encode(batch).mean)
