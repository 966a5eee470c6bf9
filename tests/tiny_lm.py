"""A tiny pretrained-LM text VAE for tests: a 2-layer Llama decoder and a 2-layer BERT encoder built from configs
(random weights, no download), saved once per session as local folders, with a small BPE tokenizer."""
import functools
import tempfile
from pathlib import Path

import torch

from conftest import two_topic_sentences


@functools.lru_cache(maxsize=1)
def tiny_backbones() -> tuple[Path, Path]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root = Path(tempfile.mkdtemp(prefix="vaekit-tiny-lm-"))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(two_topic_sentences() + ["Shares Fell. The Cat."], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<pad>", "[CLS]"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<pad>", cls_token="[CLS]")
    vocab = fast.vocab_size if hasattr(fast, "vocab_size") else len(fast)
    torch.manual_seed(0)
    decoder = LlamaForCausalLM(LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                           max_position_embeddings=128, tie_word_embeddings=True,
                                           bos_token_id=0, eos_token_id=0, pad_token_id=1))
    encoder = BertModel(BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=64, max_position_embeddings=128, pad_token_id=1))
    for name, model in (("decoder", decoder), ("encoder", encoder)):
        model.save_pretrained(root / name)
        fast.save_pretrained(root / name)
    assert vocab
    return root / "decoder", root / "encoder"


def tiny_lm_text_vae(**fields):
    from vaekit.models.lm_text import LMTextVAE

    decoder, encoder = tiny_backbones()
    torch.manual_seed(0)
    # fp32 base weights unless a test asks: several compare two computations exactly, which "auto" would make
    # depend on the CPU; test_frozen_base_weights_in_bf16_... covers the bf16 base
    fields = {"latent_dim": 4, "lora_rank": 4, "base_precision": "fp32", **fields}
    return LMTextVAE.build(str(decoder), str(encoder), **fields)
