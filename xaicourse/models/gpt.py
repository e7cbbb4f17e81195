"""A tiny generative transformer with a planted circuit, and the task that plants it. Chapter 10.

:class:`TinyGPT` is a 2-layer, attention-only, causal transformer without LayerNorm (so the logit
lens and direct logit attribution are exact sums, not approximations). Every head's output before the
output projection goes through an identity module ``blocks.<l>.attn.hook_z`` shaped (B, T, H, d_head),
like TransformerLens' ``hook_z``: :mod:`xaicourse.hooks` records or replaces it, one head at a time.

The task (:func:`repeated_tokens`): ``[BOS, x_1 .. x_L, x_1 .. x_L]`` with the ``x`` distinct random
characters. The first half cannot be predicted (chance is 1 / (vocabulary - 1)); the second half can,
by an induction circuit: a previous-token head in layer 0 writes "the token before me" into each
position, an induction head in layer 1 looks for the position whose previous token is the current
token and copies the token there. :class:`GPTBundle` holds the model, the tokenizer and the names of
its blocks and heads.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["CharTokenizer", "GPTBundle", "HFModel", "HFTokenizer", "HeadAttention", "TinyGPT", "repeated_tokens"]

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"  # 48 characters; the BOS token is "^"


class HeadAttention(nn.Module):
    """Causal multi-head attention whose per-head outputs (B, T, H, d_head) pass through ``hook_z``. Chapter 10."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.hook_pattern = nn.Identity()  # (B, H, T, T) attention weights
        self.hook_z = nn.Identity()        # (B, T, H, d_head) per-head outputs before the projection

    def forward(self, x, positions=None):
        B, T, _ = x.shape
        w, b = self.qkv.weight.view(3, -1, x.shape[-1]), self.qkv.bias.view(3, -1)
        qk_in = x if positions is None else x + positions  # positions enter the scores, not the values
        q, k = (torch.nn.functional.linear(qk_in, w[i], b[i]).view(B, T, self.n_heads, self.d_head) for i in (0, 1))
        v = torch.nn.functional.linear(x, w[2], b[2]).view(B, T, self.n_heads, self.d_head)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / self.d_head ** 0.5
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        pattern = self.hook_pattern(scores.masked_fill(~causal, float("-inf")).softmax(-1))
        z = self.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))
        return self.out(z.reshape(B, T, -1))

    def head_results(self, z: torch.Tensor) -> torch.Tensor:
        """What each head writes into the residual stream: (B, T, H, d_model), bias not included. Chapter 10."""
        w = self.out.weight.view(-1, self.n_heads, self.d_head)  # (d_model, H, d_head)
        return torch.einsum("bthd,mhd->bthm", z, w)


class Block(nn.Module):
    """One attention-only residual block: ``x + attn(x)``."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.attn = HeadAttention(d_model, n_heads)
        self.hook_resid_post = nn.Identity()

    def forward(self, x, positions=None):
        return self.hook_resid_post(x + self.attn(x, positions))


class TinyGPT(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, V). Attention only, no LayerNorm. Chapter 10.

    ``forward(ids, token_embeddings=None)``: pass ``token_embeddings`` (B, T, d_model) to run from the
    token embeddings instead of the ids (what Integrated Gradients over embeddings interpolates).
    """

    def __init__(self, vocab_size: int = len(ALPHABET) + 1, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
                 max_len: int = 32):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, n_layers=n_layers, max_len=max_len)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Embedding(max_len, d_model)
        self.hook_embed = nn.Identity()  # the token embeddings: the residual stream before block 0
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.unembed = nn.Linear(d_model, vocab_size)

    def forward(self, ids: torch.Tensor | None = None, token_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        if token_embeddings is None and (not isinstance(ids, torch.Tensor) or ids.dim() != 2
                                         or ids.dtype not in (torch.long, torch.int)):
            raise TypeError(f"ids must be token ids, a (B, T) tensor of dtype long (tokenizer.encode gives one), got "
                            f"{getattr(ids, 'dtype', type(ids).__name__)} {tuple(getattr(ids, 'shape', ()))}")
        tokens = self.embed(ids) if token_embeddings is None else token_embeddings
        T = tokens.shape[1]
        if T > self.config["max_len"]:
            raise ValueError(f"sequence of {T} tokens is longer than the model's max_len {self.config['max_len']}")
        positions = self.pos_embed(torch.arange(T, device=tokens.device))
        x = self.hook_embed(tokens)
        for i, block in enumerate(self.blocks):
            x = block(x, positions if i == 0 else None)
        return self.unembed(x)


class CharTokenizer:
    """One character per token, with a beginning-of-sequence token "^" at id 0. Chapter 10."""

    bos = "^"

    def __init__(self, alphabet: str = ALPHABET):
        self.vocab = [self.bos, *alphabet]
        self.ids = {c: i for i, c in enumerate(self.vocab)}

    def encode(self, text: str, bos: bool = True) -> torch.Tensor:
        """``text`` -> ids (1, T), with BOS first unless ``bos=False``. Chapter 10."""
        unknown = sorted(set(text) - set(self.ids))
        if unknown:
            raise ValueError(f"characters {unknown} are not in the vocabulary: use letters of {ALPHABET!r}")
        ids = [self.ids[c] for c in text if c != self.bos or not bos]
        return torch.tensor([([0] if bos else []) + ids])

    def decode(self, ids) -> str:
        """ids (a tensor or list, one sequence) -> string. Chapter 10."""
        return "".join(self.vocab[int(i)] for i in torch.as_tensor(ids).flatten())

    def __len__(self):
        return len(self.vocab)


def repeated_tokens(n: int, half: int = 10, vocab_size: int = len(ALPHABET) + 1, seed: int = 0,
                    min_half: int | None = None) -> torch.Tensor:
    """``n`` sequences ``[BOS, filler, x, x, filler]`` (n, 1 + 2 * half) of distinct random non-BOS ids. Chapter 10.

    With ``min_half=None`` every ``x`` has ``half`` tokens and there is no filler. Otherwise each
    sequence draws its length L in [min_half, half] and 2 * (half - L) filler tokens, split at random
    between the start and the end, so the repeat starts and ends at a different position in each
    sequence (what training uses: with fixed positions a model can copy by position instead of
    learning induction).
    """
    if half > vocab_size - 1 or (min_half is not None and not 1 <= min_half <= half):
        raise ValueError(f"half={half} needs that many distinct tokens (the vocabulary has {vocab_size - 1}) and "
                         f"1 <= min_half <= half, got min_half={min_half}")
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = half if min_half is None else int(torch.randint(min_half, half + 1, (1,), generator=gen))
        slack = 2 * (half - length)
        before = int(torch.randint(0, slack + 1, (1,), generator=gen))
        tokens = torch.randperm(vocab_size - 1, generator=gen)[:slack + length] + 1
        x = tokens[before:before + length]
        rows.append(torch.cat([torch.zeros(1, dtype=torch.long), tokens[:before], x, x, tokens[before + length:]]))
    return torch.stack(rows)


@dataclass
class GPTBundle:
    """The tiny GPT with its tokenizer and the names of its parts. Chapter 10.

    ``blocks``: the residual stream after each block (module names); ``heads``: one (module name,
    head index) per head, the module being ``blocks.<l>.attn.hook_z``; ``head_labels``: "L0H0" ...
    ``half``: the length of the random half the model was trained on.
    """

    model: TinyGPT
    tokenizer: CharTokenizer = field(default_factory=CharTokenizer)
    half: int = 10
    name: str = "tiny_gpt"

    @property
    def n_layers(self) -> int:
        return len(self.model.blocks)

    @property
    def n_heads(self) -> int:
        return self.model.blocks[0].attn.n_heads

    @property
    def blocks(self) -> list[str]:
        return [f"blocks.{i}.hook_resid_post" for i in range(self.n_layers)]

    @property
    def heads(self) -> list[tuple[str, int]]:
        return [(f"blocks.{l}.attn.hook_z", h) for l in range(self.n_layers) for h in range(self.n_heads)]

    @property
    def head_labels(self) -> list[str]:
        return [f"L{l}H{h}" for l in range(self.n_layers) for h in range(self.n_heads)]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> GPTBundle:
        self.model.to(device)
        return self

    def for_captum(self) -> tuple[HFModel, HFTokenizer]:
        """The model and tokenizer dressed as Hugging Face ones, for Captum's LLM attribution. Chapter 10."""
        return HFModel(self.model), HFTokenizer("".join(self.tokenizer.vocab[1:]))

    def sequences(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` repeated sequences [BOS, x, x] of length ``half`` on the model's device. Chapter 10.

        Training draws from other seeds (``train_tiny_gpt``: seed * 100000 + step); with 48 x 47 x ... x 39
        possible halves, a test sequence that was also a training sequence is vanishingly unlikely.
        """
        return repeated_tokens(n, self.half, len(self.tokenizer), seed=seed).to(self.device)


class HFTokenizer(CharTokenizer):
    """The character tokenizer with the Hugging Face calls Captum's LLM attribution makes. Chapter 10.

    ``encode(text, return_tensors="pt")`` -> ids (1, T) with BOS, otherwise a list;
    ``add_special_tokens=False`` leaves BOS out; ``tokenizer(text, return_offsets_mapping=True)``;
    ``convert_ids_to_tokens`` / ``convert_tokens_to_ids``.
    """

    def encode(self, text: str, bos: bool = True, return_tensors: str | None = None,
               add_special_tokens: bool | None = None):
        ids = super().encode(text, bos=bos if add_special_tokens is None else add_special_tokens)
        return ids if return_tensors == "pt" else ids[0].tolist()

    def __call__(self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False, **_):
        ids = self.encode(text, add_special_tokens=add_special_tokens)
        offsets = [(0, 0)] * (len(ids) - len(text)) + [(i, i + 1) for i in range(len(text))]
        return {"input_ids": ids, **({"offset_mapping": offsets} if return_offsets_mapping else {})}

    def convert_ids_to_tokens(self, ids):
        return [self.vocab[int(i)] for i in ids]

    def convert_tokens_to_ids(self, tokens):
        return [self.ids[t] for t in tokens]


class HFOutput(dict):
    """What a Hugging Face causal LM returns, reduced to ``.logits``."""

    __getattr__ = dict.__getitem__


class HFModel(nn.Module):
    """TinyGPT called the Hugging Face way: ``forward(input_ids, attention_mask=None)`` -> ``.logits``. Chapter 10.

    For libraries that expect a Hugging Face causal LM (Captum's ``LLMAttribution``); the mask is
    ignored (no padding). ``embed`` is the token embedding, for ``LayerIntegratedGradients``.
    """

    def __init__(self, model: TinyGPT):
        super().__init__()
        self.inner = model
        self.embed = model.embed

    def forward(self, input_ids, attention_mask=None, **_):
        return HFOutput(logits=self.inner(input_ids))
