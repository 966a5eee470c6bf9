import csv
import gzip
import json

import numpy as np
import pytest
import torch

from vaekit import VaekitError
from vaekit.data.text import TextBatches, TextSource, TokenFile, TokenFileWriter, read_records, split_units
from vaekit.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, TextTokenizer, TokenizerConfig

from conftest import two_topic_sentences


def texts(path, **options):
    return [r.text for r in read_records(TextSource(str(path), **options))]


def test_txt_lines_skip_blanks_and_gz(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\n two \nthree\n")
    assert texts(tmp_path / "a.txt") == ["one", "two", "three"]
    with gzip.open(tmp_path / "a.txt.gz", "wt") as fh:
        fh.write("x\ny\n")
    assert texts(tmp_path / "a.txt.gz") == ["x", "y"]


def test_folder_of_blog_posts_is_read_recursively(tmp_path):
    (tmp_path / "2024").mkdir()
    (tmp_path / "a.txt").write_text("First post.\n\nSecond paragraph.")
    (tmp_path / "2024" / "b.txt").write_text("Nested post.")
    (tmp_path / "notes.md").write_text("ignored")
    records = list(read_records(TextSource(str(tmp_path))))
    assert [r.id for r in records] == ["2024/b.txt", "a.txt"]
    assert records[1].text == "First post.\n\nSecond paragraph."


def test_blog_csv_with_multiline_quoted_fields(tmp_path):
    path = tmp_path / "posts.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["post_id", "title", "author", "content"])
        writer.writerow([7, "Hello", "Ann", "Line one, with a comma.\nLine two \"quoted\"."])
        writer.writerow([8, "Bye", "Bob", "Short."])
    records = list(read_records(TextSource(str(path), title_column="title")))
    assert [r.id for r in records] == ["posts.csv:7", "posts.csv:8"]
    assert records[0].text == 'Line one, with a comma.\nLine two "quoted".' and records[0].title == "Hello"


def test_csv_without_the_named_column_lists_the_columns(tmp_path):
    path = tmp_path / "posts.csv"
    path.write_text("post_id,title,body\n1,a,b\n")
    with pytest.raises(VaekitError, match="no 'text' or 'content' column; pass --text-column \\(the columns are post_id, title, body\\)"):
        texts(path)
    with pytest.raises(VaekitError, match="no column 'words' for --text-column; the columns are post_id, title, body"):
        texts(path, text_column="words")
    assert texts(path, text_column="body") == ["b"]


def test_jsonl_with_labels(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"text": "hi there", "topic": "x"}) + "\n" + json.dumps({"text": "yo", "topic": "y"}) + "\n")
    records = list(read_records(TextSource(str(path), label_column="topic")))
    assert [(r.text, r.label) for r in records] == [("hi there", "x"), ("yo", "y")]
    path.write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(VaekitError, match="line 2 is not valid JSON"):
        texts(path)


def test_non_utf8_names_file_and_byte_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("fine line\ncaf".encode() + b"\xe9 au lait\n")
    with pytest.raises(VaekitError, match=r"bad.txt: byte offset 13 \(line 2\) is not valid utf-8; pass --encoding"):
        texts(path)
    assert texts(path, encoding="latin-1")[1] == "café au lait"


def test_empty_inputs(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(VaekitError, match="holds no text"):
        texts(tmp_path / "empty.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(VaekitError, match="no .txt files found"):
        texts(tmp_path / "folder")
    with pytest.raises(VaekitError, match="no such file or folder"):
        texts(tmp_path / "missing.txt")


def test_split_units():
    doc = "Dr. Smith arrived. He said \"Hello!\" Then left.\n\nA new paragraph here."
    assert split_units(doc, "paragraph") == ["Dr. Smith arrived. He said \"Hello!\" Then left.", "A new paragraph here."]
    assert split_units(doc, "sentence") == ["Dr.", "Smith arrived.", "He said \"Hello!\"", "Then left.", "A new paragraph here."]


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_tokenizer_specials_round_trip_and_save(tmp_path, kind):
    corpus = two_topic_sentences()
    tok = TextTokenizer.train(corpus, TokenizerConfig(kind=kind, vocab_size=200))
    assert [tok.tokenizer.token_to_id(t) for t in ("<pad>", "<unk>", "<bos>", "<eos>")] == [PAD_ID, UNK_ID, BOS_ID, EOS_ID]
    ids = tok.encode("the lazy cat sat on the warm mat.")
    assert tok.decode(ids + [EOS_ID, 99]) == "the lazy cat sat on the warm mat."
    tok.save(tmp_path / "tokenizer.json")
    again = TextTokenizer.load(tmp_path / "tokenizer.json", tok.config)
    assert again.encode("shares of banks fell") == tok.encode("shares of banks fell")


def test_word_tokenizer_caps_vocabulary_and_maps_unknown_words():
    tok = TextTokenizer.train(["a a a b b c", "a b d"], TokenizerConfig(vocab_size=6))
    assert tok.vocab_size == 6
    assert tok.encode("c zebra")[1] == UNK_ID
    assert tok.unknown_fraction("zebra giraffe a") == pytest.approx(2 / 3)


def test_pretokenized_keeps_ptb_tokens_whole():
    tok = TextTokenizer.train(["the company 's <unk> rose N %"], TokenizerConfig(pretokenized=True, lowercase=False))
    ids = tok.encode("the company 's <unk> rose N %")
    assert len(ids) == 7 and ids[3] == UNK_ID


def test_token_file_and_bucketed_batches(tmp_path):
    rng = np.random.default_rng(0)
    writer = TokenFileWriter(tmp_path / "train")
    sequences = [list(rng.integers(4, 50, size=rng.integers(1, 30))) for _ in range(300)]
    for seq in sequences:
        writer.add(seq)
    writer.close()
    tokens = TokenFile(tmp_path / "train")
    assert isinstance(tokens.ids, np.memmap) and len(tokens) == 300
    assert tokens[5].tolist() == sequences[5]
    data = TextBatches(tokens)
    batches = list(data.train_batches(16, torch.Generator().manual_seed(0)))
    assert len(batches) == data.num_train_batches(16)
    seen = sorted(tuple(b.ids[i, :b.lengths[i]].tolist()) for b in batches for i in range(len(b)))
    assert seen == sorted(tuple(s) for s in sequences)
    for b in batches:
        assert b.ids.shape[1] == int(b.lengths.max())  # padded per batch, never to the corpus maximum
    spread = np.mean([int(b.lengths.max() - b.lengths.min()) for b in batches])
    assert spread < 10  # bucketing: lengths within a batch are close (unbucketed they span about 29)


@pytest.mark.parametrize("name, content, where", [
    ("posts.csv", "post_id,title,author,content\n1,a,b,fine text\n7,a,b,bad \x00 text\n", "posts.csv:7"),
    ("lines.txt", "fine text\nbad \x00 text\n", "lines.txt:2"),
    ("rows.jsonl", '{"text": "fine"}\n{"text": "bad \\u0000 text"}\n', "rows.jsonl:2"),
])
def test_a_nul_byte_is_an_error_naming_the_record(tmp_path, name, content, where):
    """Issue 33, defect 10: NUL bytes in a CSV became a vocabulary token; a text file does not hold them."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(VaekitError, match=rf"{where} holds a NUL byte"):
        list(read_records(TextSource(path)))
