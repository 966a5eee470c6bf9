"""The baseline a user tries first: the bundled instruct LM asked, with a few worked examples, to rewrite a text in
other words (issue 32). No VAE and no training; the variation report puts it beside vaekit's variations so that
a trained model is judged against it (similarity to the input at equal or lower BLEU to the input)."""
from __future__ import annotations

import torch

INSTRUCTION = "Rewrite the text in other words. Keep its meaning and its style; change the wording."
# worked examples, headlines and a sentence, written for this prompt (none is from the benchmark data)
EXAMPLES = [
    ("Stocks fall as oil prices rise", "Share prices drop while the cost of oil climbs"),
    ("17 Photos That Will Make You Want To Adopt A Puppy Right Now",
     "These 17 Pictures Will Have You Running To The Nearest Animal Shelter"),
    ("The city council voted to close the old bridge for repairs.",
     "Councillors decided the ageing bridge will shut so it can be repaired."),
]


def prompt_ids(tokenizer, text: str) -> torch.Tensor:
    """The chat prompt (instruction, worked examples, then ``text``) as token ids (1, T)."""
    turns = [{"role": "system", "content": INSTRUCTION}]
    for source, rewritten in EXAMPLES:
        turns += [{"role": "user", "content": source}, {"role": "assistant", "content": rewritten}]
    turns.append({"role": "user", "content": text})
    ids = tokenizer.apply_chat_template(turns, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return ids["input_ids"]


def first_line(text: str) -> str:
    line = text.strip().split("\n")[0].strip()
    return line[1:-1].strip() if len(line) > 1 and line[0] == line[-1] and line[0] in "\"'" else line


@torch.no_grad()
def prompted_variations(texts: list[str], n: int = 5, *, seed: int = 0, decoder: str | None = None,
                        temperature: float = 0.8, top_p: float = 0.9, max_new_tokens: int = 48,
                        lm=None, tokenizer=None) -> list[list[str]]:
    """``n`` rewrites of each text by the instruct LM (``decoder``: a name or folder, None: the bundled
    SmolLM2-135M-Instruct), sampled with ``temperature`` and nucleus ``top_p``; text i draws with seed + i."""
    if lm is None:
        from .backbones import load_decoder

        _, lm, tokenizer = load_decoder(decoder)
    stop = [tokenizer.eos_token_id]  # and the chat turn's end, where the template has one (SmolLM2: <|im_end|>)
    if "<|im_end|>" in tokenizer.get_vocab():
        stop.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    for i, text in enumerate(texts):
        ids = prompt_ids(tokenizer, text).to(lm.device)
        torch.manual_seed(seed + i)
        drawn = lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=temperature,
                            top_p=top_p, max_new_tokens=max_new_tokens, num_return_sequences=n,
                            eos_token_id=stop, pad_token_id=pad)
        out.append([first_line(tokenizer.decode(row[ids.shape[1]:], skip_special_tokens=True)) for row in drawn])
    return out
