from dbooth.families.tokenizer import build_word_tokenizer
from dbooth.families.tiny import TINY_WORDS


def test_every_word_is_one_token():
    words = TINY_WORDS + ["mountain", "background", "fabric", "cobblestone", "in", "on", "a"]
    tok = build_word_tokenizer(words, model_max_length=20)
    split = [w for w in words if len(tok.tokenize(w)) != 1]
    assert split == []
    ids = tok("a photo of sks dog", padding="max_length").input_ids
    assert len(ids) == 20 and ids[0] == tok.bos_token_id
    assert tok.convert_ids_to_tokens(ids[1:6]) == ["a</w>", "photo</w>", "of</w>", "sks</w>", "dog</w>"]


def test_unknown_words_fall_back_to_characters():
    tok = build_word_tokenizer(["dog"], model_max_length=16)
    assert tok.tokenize("cat") == ["c", "a", "t</w>"]
