"""What the flow-matching families with a language model as their text encoder (FLUX.2 [klein], Z-Image) share.

The caption is wrapped in Qwen3's chat template (one user turn, then the assistant's turn opened) and read by a
Qwen3 model; the families differ in which hidden states they take. Tokenizing gives two tensors per caption
list, the token ids and the attention mask, so the trainer's prompt bank keeps both by caption row. The
encoder is never trained, as in diffusers' reference scripts for both families (their text encoders are
frozen and have no ``--train_text_encoder``): dbooth refuses ``train_text_encoder`` rather than ignoring it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from dbooth.families.flow import FlowFamily
from dbooth.util.errors import DboothError


@dataclass(frozen=True)
class LMFlowFamily(FlowFamily):
    text_encoder_names: tuple[str, ...] = ("text_encoder",)
    tokenizer_names: tuple[str, ...] = ("tokenizer",)
    t5_name: str = ""  # no T5: the language model is the only encoder
    t5_max_length: int = 512  # text tokens per caption when train.flow.max_sequence_length is null (both pipelines)
    enable_thinking: bool = False  # the chat template's switch, as the family's pipeline sets it
    transformer_class_name: str = ""  # the denoiser's diffusers class: how family_of knows a bare set of parts

    def chat_texts(self, tokenizer, prompts: list[str]) -> list[str]:
        """Each caption as the pipeline hands it to the tokenizer: one user turn, the assistant's turn opened."""
        return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                              add_generation_prompt=True, enable_thinking=self.enable_thinking)
                for p in prompts]

    def tokenize(self, tokenizers: Sequence, prompts: list[str], *,
                 max_sequence_length: int | None = None) -> list:
        """[token ids, attention mask], both [N, length], padded (right) and cut to the run's text length."""
        (tokenizer,) = tokenizers
        out = tokenizer(self.chat_texts(tokenizer, prompts), padding="max_length", truncation=True,
                        max_length=max_sequence_length or self.t5_max_length, return_tensors="pt")
        return [out.input_ids, out.attention_mask]

    def trained_text_encoders(self, pipe) -> dict:
        raise DboothError(f"train.train_text_encoder: {self.title}'s language-model text encoder stays frozen (as in "
                          "diffusers' reference training script); set train.train_text_encoder to false in dbooth.yaml "
                          "(or drop --train-text-encoder)")


def hidden_states(encoder, ids: Sequence, *, mask_dtype=None) -> tuple:
    """Every layer's hidden states of the language model for [token ids, attention mask] (the mask as
    ``mask_dtype`` when the family's pipeline passes it so), on the encoder's device."""
    from dbooth.families.base import device_of

    device = device_of(encoder)
    input_ids, mask = ids[0].to(device), ids[1].to(device)
    if mask_dtype is not None:
        mask = mask.to(mask_dtype)
    out = encoder(input_ids=input_ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
    return out.hidden_states
