"""Activation memory of a flow transformer's training step, counted on the meta device (SD 3.5, FLUX.1).

One forward of the real diffusers transformer on the meta device, with the run's token counts, records by size every
tensor autograd saves for the backward (once per storage; the frozen weights themselves are not activations). A frozen
layer saves nothing for its own weights; what an adapter saves is added as PEFT makes it: its input (in a 16-bit run a
new copy per adapted layer, since PEFT casts the input to the float32 adapter and autocast casts it back), its
rank-wide hidden and its cast weights. Attention is counted as a fused kernel (flash / memory-efficient SDPA) keeps
it: query, key, value, output and a float32 log-sum-exp per head and token; no sequence x sequence matrix. Checked
against the same count with real tensors, the trainer's own adapters and CPU autocast on narrow SD 3.5 and FLUX
transformers (tests/bench/test_flow_memory.py): within 0.2 % in bf16, 1.5 % in fp32.

With gradient checkpointing (diffusers checkpoints each transformer block, ``_no_split_modules``) what stays is each
block's inputs, the saves outside the blocks, and one block's saves while it is recomputed in the backward.
"""

from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode


def weight_dtype(train: dict) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(train["mixed_precision"], torch.float32)


def image_tokens(resolution: int, down: int = 8) -> int:
    """(px / 16)^2 for both: the VAE's 8x downsampling, then 2x2 patches (SD 3.5) or 2x2 packing (FLUX)."""
    return (resolution // down // 2) ** 2


def transformer_inputs(denoiser, family, n: int, resolution: int, tokens: int, dtype: torch.dtype,
                       device: str = "meta", down: int = 8) -> dict:
    """Keyword arguments of one training forward, as the family's ``predict`` builds them."""
    cfg = denoiser.config

    def empty(*shape, dt=dtype):
        return torch.empty(*shape, device=device, dtype=dt)

    args = {"timestep": empty(n, dt=torch.float32), "encoder_hidden_states": empty(n, tokens, cfg.joint_attention_dim),
            "pooled_projections": empty(n, cfg.pooled_projection_dim), "return_dict": False}
    if family.name == "sd3":
        side = resolution // down
        return {**args, "hidden_states": empty(n, cfg.in_channels, side, side)}
    img = image_tokens(resolution, down)
    args.update(hidden_states=empty(n, img, cfg.in_channels), img_ids=empty(img, 3), txt_ids=empty(tokens, 3))
    if cfg.guidance_embeds:
        args["guidance"] = empty(n, dt=torch.float32)
    return args


class _FusedAttentionSaves(torch.autograd.Function):
    """Stands in for SDPA on the meta device, saving what the flash / memory-efficient kernels save."""

    @staticmethod
    def forward(ctx, query, key, value):
        out = query.new_empty(query.shape[:-1] + value.shape[-1:])
        lse = query.new_empty(query.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(query, key, value, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):  # never run: the count stops after the forward
        raise NotImplementedError


class _FusedAttention(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            qkv = list(args[:3]) + [kwargs[k] for k in ("query", "key", "value")[len(args[:3]):]]
            if qkv[0].device.type == "meta":
                return _FusedAttentionSaves.apply(*qkv)
        return func(*args, **kwargs)


def targeted_linears(model: torch.nn.Module, targets: list[str]) -> list[torch.nn.Linear]:
    """The Linear layers PEFT wraps for ``targets``: a name equal to one, or ending in "." + one."""
    return [module for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets)]


def adapted_layers(denoiser, family, train: dict) -> list[torch.nn.Linear]:
    """The layers LoRA wraps (none for a full fine-tune)."""
    if train["method"] == "full":
        return []
    return targeted_linears(denoiser, family.lora_targets(train["lora"]["target_modules"]))


@contextlib.contextmanager
def trainable_as(denoiser, adapted: list):
    """Mark what the run trains; restored after. For LoRA an adapted layer's bias stands in for its adapter: its
    output then needs a gradient while the frozen weight saves nothing, as in the real run (``_SavedCount`` adds
    what the adapter saves)."""
    with grad_flags_kept(denoiser):
        denoiser.requires_grad_(not adapted)
        for module in adapted:
            (module.bias if module.bias is not None else module.weight).requires_grad_(True)
        yield


@contextlib.contextmanager
def grad_flags_kept(model):
    """Each parameter's requires_grad as it was, after the block."""
    before = {p: p.requires_grad for p in model.parameters()}
    try:
        yield
    finally:
        for p, flag in before.items():
            p.requires_grad_(flag)


def _storage_key(t: torch.Tensor):
    return t.untyped_storage()._cdata


class _SavedCount:
    """Bytes autograd saves during a forward, in total and per checkpointed block, plus each block's inputs.

    ``adapted``: the LoRA layers, whose adapters save their input and their rank-wide hidden. In 16-bit runs PEFT
    casts the input to the float32 adapters' dtype and autocast casts it back for the matmul: the saved input is a
    new 16-bit copy per layer (q, k and v each keep one), and so are the adapters' weights.
    """

    def __init__(self, denoiser, adapted: list, rank: int, cast: bool):
        self.skip = {_storage_key(p) for p in denoiser.parameters()}
        self.seen: dict = {}
        self.block = None  # the block running now, or None outside the blocks
        self.per_block: dict = {}
        self.inputs: dict = {}
        self.adapted, self.rank, self.cast = adapted, rank, cast
        self.alive: list = []
        units = tuple(getattr(denoiser, "_no_split_modules", None) or ())
        self.blocks = [m for m in denoiser.modules() if type(m).__name__ in units]

    def add(self, key, nbytes: int) -> None:
        self.seen[key] = nbytes
        self.per_block[self.block] = self.per_block.get(self.block, 0) + nbytes

    def pack(self, t: torch.Tensor):
        storage = t.untyped_storage()
        key = _storage_key(t)
        if key not in self.skip and key not in self.seen:
            self.add(key, storage.nbytes())
            self.alive.append(storage)  # a freed storage's address could come back for another tensor
        return t

    def adapter(self, module, args):
        x = args[0]
        size, rows = x.element_size(), x.numel() // module.in_features
        if self.cast:
            self.add(("input", len(self.seen)), x.numel() * size)
            self.add(("weights", len(self.seen)), self.rank * (module.in_features + module.out_features) * size)
        else:
            self.pack(x)
        self.add(("hidden", len(self.seen)), rows * self.rank * size)

    def enter(self, module, args, kwargs):
        self.block = id(module)
        for t in [*args, *kwargs.values()]:
            if isinstance(t, torch.Tensor) and _storage_key(t) not in self.inputs:
                self.inputs[_storage_key(t)] = t.untyped_storage().nbytes()
                self.alive.append(t.untyped_storage())

    def leave(self, module, args, kwargs, output):
        self.block = None

    @contextlib.contextmanager
    def recording(self):
        handles = [h for b in self.blocks for h in (b.register_forward_pre_hook(self.enter, with_kwargs=True),
                                                    b.register_forward_hook(self.leave, with_kwargs=True))]
        handles += [m.register_forward_pre_hook(self.adapter) for m in self.adapted]
        try:
            with _FusedAttention(), torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t):
                yield
        finally:
            for h in handles:
                h.remove()


def saved_activations(denoiser, family, train: dict, n: int, tokens: int, down: int = 8) -> dict:
    """Activation bytes of one forward of ``n`` images and ``tokens`` of context (meta device): plain, and with
    gradient checkpointing."""
    dtype = weight_dtype(train)
    denoiser.to(dtype)
    adapted = adapted_layers(denoiser, family, train)
    count = _SavedCount(denoiser, adapted, train["lora"]["rank"], cast=dtype != torch.float32)
    inputs = transformer_inputs(denoiser, family, n, train["resolution"], tokens, dtype, down=down)
    with trainable_as(denoiser, adapted), count.recording():
        denoiser(**inputs)
    blocks = [v for k, v in count.per_block.items() if k is not None]
    outside = count.per_block.get(None, 0)
    return {"plain": sum(count.seen.values()),
            "checkpointed": outside + sum(count.inputs.values()) + max(blocks, default=0),
            "blocks": len(count.blocks)}
