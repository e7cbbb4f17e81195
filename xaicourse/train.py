"""Reproducible training of the small models the course ships in data/ (seeded, with progress bars).

Each section trains one artifact; rerunning it with the same seed reproduces the committed file.
"""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from . import data, models, paths
from .inputs import check_types, positive_int

__all__ = ["SHAPES_CNN_SPLITS", "TINY_GPT_TASK", "TINY_VIT_DATA", "gpt_accuracy", "predict_texts", "shapes_accuracy",
           "train_head", "train_sentiment", "train_tiny_gpt",
           "train_shapes_cnn", "train_shapes_resnet", "train_tiny_vit"]


# --------------------------------------------------------------------------------------------
# The sentiment classifier (chapter 05): data/sentiment_minilm.safetensors
# --------------------------------------------------------------------------------------------
def train_sentiment(epochs: int = 2, seed: int = 0, batch_size: int = 32, lr: float = 2e-4,
                    path: str | None = None, max_length: int = 128) -> dict:
    """Fit all-MiniLM-L6-v2's last layer, pooler and a 2-class head on ``data.movie_reviews("train")``.

    The five frozen layers run once over every sentence (sorted by length, so little padding) and
    their output is cached. The classifier reads only the [CLS] position of the last layer, so
    training computes that layer for [CLS] alone (keys and values still come from every token):
    the same function as the full model at a fraction of the cost (50 s on a quiet 2-core CPU, 82.4%
    held-out accuracy). Writes the trained parameters (float16, ~3.8 MB) to ``path`` (default:
    data/sentiment_minilm.safetensors) and returns {"train_accuracy", "test_accuracy", "seconds"}.
    On a CPU shared with other jobs, run it with OMP_NUM_THREADS=1: spin-waiting OpenMP threads
    made it 25x slower on a busy 2-core machine. Taught in chapter 05.
    """
    from safetensors.torch import save_file

    positive_int("epochs", epochs)
    start = time.time()
    torch.manual_seed(seed)
    model = models.minilm_classifier()
    tokenizer = models.bert().tokenizer
    train, test = data.movie_reviews("train"), data.movie_reviews("test")
    train_h = _frozen_features(model, tokenizer, train.texts, max_length, "caching frozen layers (train)")
    test_h = _frozen_features(model, tokenizer, test.texts, max_length, "caching frozen layers (test)")
    trained = [p for name, p in model.named_parameters() if name.startswith(models.SENTIMENT_TRAINED)]
    optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train_h), generator=generator).tolist()
        bar = tqdm(range(0, len(order), batch_size), desc=f"epoch {epoch + 1}/{epochs}")
        for i in bar:
            batch = order[i:i + batch_size]
            logits = _top_logits(model, [train_h[j] for j in batch])
            loss = torch.nn.functional.cross_entropy(logits, train.labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    result = {"train_accuracy": _accuracy(model, train_h, train.labels),
              "test_accuracy": _accuracy(model, test_h, test.labels)}
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()
             if k.startswith(models.SENTIMENT_TRAINED)}
    save_file(state, path or paths.weights("sentiment_minilm.safetensors"),
              metadata={"base": models.OFFLINE_BERT, "seed": str(seed), "epochs": str(epochs),
                        **{k: f"{v:.4f}" for k, v in result.items()}})
    result["seconds"] = time.time() - start
    return result


def _frozen_features(model, tokenizer, texts, max_length, desc, chunk: int = 128) -> list:
    """Output of layer 5 (the input of the trainable sixth layer) per sentence: (T_i, 384) float16."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    features = [None] * len(texts)
    for start in tqdm(range(0, len(order), chunk), desc=desc):
        batch = order[start:start + chunk]
        enc = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length)
        with torch.no_grad():
            hidden = model.bert(**enc, output_hidden_states=True).hidden_states[-2]
        for i, h, n in zip(batch, hidden, enc["attention_mask"].sum(1).tolist()):
            features[i] = h[:n].half()
    return features


def _top_logits(model, features: list):
    """The classifier's logits from cached layer-5 features: the last layer at [CLS] only, the pooler, the head."""
    hidden = torch.nn.utils.rnn.pad_sequence([h.float() for h in features], batch_first=True)  # (B, T, D)
    padding = torch.nn.utils.rnn.pad_sequence([torch.zeros(len(h), dtype=torch.bool) for h in features],
                                              batch_first=True, padding_value=True)
    layer = model.bert.encoder.layer[-1]
    attention = layer.attention.self
    heads, size = attention.num_attention_heads, attention.attention_head_size

    def split(t):  # (B, T, D) -> (B, heads, T, size)
        return t.view(len(t), -1, heads, size).transpose(1, 2)

    cls = hidden[:, :1]
    scores = split(attention.query(cls)) @ split(attention.key(hidden)).transpose(-1, -2) * size**-0.5
    weights = attention.dropout(scores.masked_fill(padding[:, None, None, :], float("-inf")).softmax(-1))
    context = (weights @ split(attention.value(hidden))).transpose(1, 2).reshape(len(hidden), 1, -1)
    out = layer.attention.output(context, cls)               # dense, dropout, residual, LayerNorm
    out = layer.output(layer.intermediate(out), out)          # feed-forward, residual, LayerNorm
    return model.classifier(model.dropout(model.bert.pooler(out)))


def _accuracy(model, features: list, labels, chunk: int = 128) -> float:

    with torch.no_grad():
        predictions = torch.cat([_top_logits(model, features[i:i + chunk]).argmax(1)
                                 for i in range(0, len(features), chunk)])
    return (predictions == labels).float().mean().item()


# --------------------------------------------------------------------------------------------
# The tiny Vision Transformer (chapter 04): data/tiny_vit.pt
# --------------------------------------------------------------------------------------------
TINY_VIT_DATA = {"train": dict(n=3000, seed=0), "test": dict(n=600, seed=1)}


def train_tiny_vit(epochs: int = 24, seed: int = 0, batch_size: int = 32, lr: float = 1e-3,
                   path: str | None = None) -> dict:
    """Train ``models.TinyViT`` on ``data.shapes`` (3000 train / 600 test images, 64x64) from scratch.

    AdamW with a one-cycle schedule and horizontal flips, 2256 steps (73 s on a quiet 2-core CPU, 9
    minutes on a heavily shared one; the defaults reach 0.90 test accuracy, and the last digits of the
    weights depend on the thread count). Writes the config, weights (float32,
    ~0.6 MB), class names and accuracies to ``path`` (default: data/tiny_vit.pt) and returns
    {"train_accuracy", "test_accuracy", "seconds"}. Taught in chapter 04.
    """
    positive_int("epochs", epochs)
    start = time.time()
    torch.manual_seed(seed)
    train, test = data.shapes(**TINY_VIT_DATA["train"]), data.shapes(**TINY_VIT_DATA["test"])
    config = dict(image_size=64, patch_size=8, dim=64, depth=4, heads=4, mlp_ratio=2, n_classes=len(train.classes))
    model = models.TinyViT(**config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * -(-len(train) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(total=steps, desc="training the tiny ViT")
    for _ in range(epochs):
        for batch in torch.randperm(len(train), generator=generator).split(batch_size):
            x, y = train.images[batch], train.labels[batch]
            flip = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    with torch.no_grad():
        result = {f"{name}_accuracy": (model(ds.images).argmax(1) == ds.labels).float().mean().item()
                  for name, ds in (("train", train), ("test", test))}
    torch.save({"config": config, "state_dict": model.state_dict(), "classes": list(train.classes),
                "seed": seed, "epochs": epochs, **result}, path or paths.weights("tiny_vit.pt"))
    result["seconds"] = time.time() - start
    return result


# --------------------------------------------------------------------------------------------
# The shapes CNNs (chapter 02): data/shapes_cnn_shortcut.pt and data/shapes_cnn_clean.pt
# --------------------------------------------------------------------------------------------
SHAPES_CNN_SPLITS = {"train": dict(n=2000, seed=11), "test": dict(n=600, seed=12)}


def train_shapes_cnn(variant: str = "shortcut", epochs: int = 10, seed: int = 0, batch_size: int = 32,
                     lr: float = 2e-3, path: str | None = None) -> dict:
    """Train ``models.ShapesCNN`` on 2000 shapes images (32x32) with the variant's marker setting.

    ``"shortcut"``: ``marker=1.0`` (the marker's corner gives the label away); ``"clean"``:
    ``marker=0.0`` (the marker is drawn in a random corner). Adam, one thread, seeded; under a
    minute on a CPU. Writes config, weights (~0.1 MB) and test accuracies to ``path`` (default:
    data/shapes_cnn_<variant>.pt) and returns {"test_accuracy", "test_accuracy_marker_moved",
    "seconds"}. Taught in chapter 02.
    """
    default_path = models.shapes_cnn_path(variant)  # an unknown variant fails here, with the choices
    return _train_shapes_model(models.ShapesCNN, models.SHAPES_CNN_VARIANTS[variant], f"the {variant} shapes CNN",
                               path or default_path, dict(variant=variant), epochs, seed, batch_size, lr)


def train_shapes_resnet(epochs: int = 10, seed: int = 0, batch_size: int = 32, lr: float = 2e-3,
                        path: str | None = None) -> dict:
    """Train ``models.ShapesResNet`` on the clean shapes images (marker carries no information), as the clean CNN.

    Adam, one thread, seeded; about a minute on a CPU. Writes config, weights (~0.4 MB) and test
    accuracies to ``path`` (default: data/shapes_resnet.pt) and returns {"test_accuracy",
    "test_accuracy_marker_moved", "seconds"}. Taught in chapter 08.
    """
    return _train_shapes_model(models.ShapesResNet, 0.0, "the shapes ResNet",
                               path or paths.weights("shapes_resnet.pt"), {}, epochs, seed, batch_size, lr)


def _train_shapes_model(architecture, marker, desc, path, extra, epochs, seed, batch_size, lr) -> dict:
    """The shared loop of the shapes models: Adam on the train split, one thread, then the test accuracies."""
    positive_int("epochs", epochs)
    positive_int("batch_size", batch_size)
    config = dict(n_classes=len(data.SHAPE_CLASSES), width=16)
    start, threads = time.time(), torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is fastest, and the result is reproducible
    try:
        torch.manual_seed(seed)
        train = data.shapes(**SHAPES_CNN_SPLITS["train"], marker=marker, **models.SHAPES_CNN_DATA)
        model = architecture(**config)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        batches = -(-len(train) // batch_size)
        bar = tqdm(total=epochs * batches, desc=f"training {desc}")
        for _ in range(epochs):
            for batch in torch.randperm(len(train), generator=generator).split(batch_size):
                loss = torch.nn.functional.cross_entropy(model(train.images[batch]), train.labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        model.eval()
        result = {name: shapes_accuracy(model, marker=m) for name, m in
                  (("test_accuracy", marker), ("test_accuracy_marker_moved", 0.0))}
    finally:
        torch.set_num_threads(threads)
    torch.save({"config": config, "state_dict": model.state_dict(), "classes": list(train.classes),
                **extra, "seed": seed, "epochs": epochs, **result}, path)
    result["seconds"] = time.time() - start
    return result


def shapes_accuracy(model, marker: float | None) -> float:
    """Accuracy of a shapes CNN on the fixed test split drawn with ``marker`` (see ``data.shapes``). Chapter 02."""
    test = data.shapes(**SHAPES_CNN_SPLITS["test"], marker=marker, **models.SHAPES_CNN_DATA)
    with torch.no_grad():
        return (model(test.images).argmax(1) == test.labels).float().mean().item()


# --------------------------------------------------------------------------------------------
# The text shortcut (chapter 05): a sentiment head fitted in the notebook
# --------------------------------------------------------------------------------------------
def train_head(texts: list[str], labels, *, seed: int = 0, steps: int = 300, lr: float = 0.02):
    """Frozen all-MiniLM-L6-v2 plus a fresh 2-class linear head fitted on (``texts``, ``labels``).

    Only the head (``classifier``, 384 x 2) learns, full batch with Adam, on the pooled sentence
    features computed once. Returns a :class:`~xaicourse.models.TextModel` that the chapter's
    interpreter explains like any classifier. Seconds for a thousand sentences. Taught in chapter 05.
    """
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts and {len(labels)} labels: give one label per text")
    torch.manual_seed(seed)
    model = models.minilm_classifier()
    text_model = models.TextModel(model=model, tokenizer=models.bert().tokenizer, name="minilm-head",
                                  labels=list(data.SENTIMENT_CLASSES))
    features = _pooled(text_model, texts)
    labels = torch.as_tensor(labels).long()
    optimizer = torch.optim.Adam(model.classifier.parameters(), lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model.classifier(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return text_model


def predict_texts(text_model, texts: list[str], batch_size: int = 64):
    """Class probabilities (N, C) of a sentence classifier for many texts, in batches. Chapter 05."""
    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    probs = []
    for i in tqdm(range(0, len(texts), batch_size), desc="classifying", leave=False):
        enc = text_model.tokenizer(list(texts[i:i + batch_size]), return_tensors="pt", padding=True,
                                   truncation=True, max_length=text_model.max_length).to(text_model.device)
        with torch.no_grad():
            probs.append(text_model.model(**enc).logits.softmax(-1).cpu())
    return torch.cat(probs)


def _pooled(text_model, texts: list[str], batch_size: int = 64):
    """The pooled [CLS] features (N, 384) a BertForSequenceClassification head reads."""
    model, features = text_model.model, []
    for i in tqdm(range(0, len(texts), batch_size), desc="sentence features", leave=False):
        enc = text_model.tokenizer(list(texts[i:i + batch_size]), return_tensors="pt", padding=True,
                                   truncation=True, max_length=128)
        with torch.no_grad():
            features.append(model.bert(**enc).pooler_output)
    return torch.cat(features)



# --------------------------------------------------------------------------------------------
# The tiny GPT with an induction circuit (chapter 10): data/tiny_gpt.pt
# --------------------------------------------------------------------------------------------
TINY_GPT_TASK = dict(half=10, min_half=3)  # the repeated-sequence task it is trained on (models.gpt.repeated_tokens)


def train_tiny_gpt(steps: int = 3000, seed: int = 1, batch_size: int = 64, lr: float = 3e-3,
                   head_sparsity: float = 1e-3, path: str | None = None) -> dict:
    """Train ``models.TinyGPT`` (2 attention-only layers x 4 heads) on repeated random sequences. Chapter 10.

    Each step draws ``batch_size`` fresh sequences ``[BOS, filler, x, x, filler]`` (the repeat's length
    and position vary: :data:`TINY_GPT_TASK`) and minimises next-token cross-entropy plus
    ``head_sparsity`` x the sum of each head's output-projection norm (a group lasso: heads the task
    does not need are switched off, so the circuit sits in few heads instead of being spread over all
    eight). AdamW, ``steps`` steps (40 s on one core of a shared 2-core CPU). Writes config, weights
    (float32, 0.17 MB) and the measured accuracies to ``path`` (default data/tiny_gpt.pt) and returns
    {"repeat_accuracy", "first_half_accuracy", "seconds"}, measured on 500 held-out [BOS, x, x]
    sequences of half length 10.
    """
    positive_int("steps", steps)
    start = time.time()
    torch.manual_seed(seed)
    model = models.TinyGPT()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    bar = tqdm(range(steps), desc="training the tiny GPT")
    for step in bar:
        ids = models.repeated_tokens(batch_size, seed=seed * 100_000 + step, **TINY_GPT_TASK)
        logits = model(ids)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        sparsity = sum(b.attn.out.weight.view(b.attn.out.out_features, b.attn.n_heads, -1).norm(dim=(0, 2)).sum()
                       for b in model.blocks)
        optimizer.zero_grad()
        (loss + head_sparsity * sparsity).backward()
        optimizer.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    model.zero_grad(set_to_none=True)
    result = gpt_accuracy(model, models.repeated_tokens(500, TINY_GPT_TASK["half"], seed=999_999))
    torch.save({"config": model.config, "state_dict": model.state_dict(), "seed": seed, "steps": steps,
                "task": TINY_GPT_TASK, **result}, path or paths.weights("tiny_gpt.pt"))
    result["seconds"] = time.time() - start
    return result


@check_types
def gpt_accuracy(model: torch.nn.Module, ids: torch.Tensor) -> dict:
    """Top-1 next-token accuracy of a :class:`~xaicourse.models.TinyGPT` on [BOS, x, x] sequences. Chapter 10.

    ``first_half_accuracy``: predicting x_2 .. x_L from x_1 .. x_(L-1) in the first copy (chance:
    1 / 47); ``repeat_accuracy``: the same predictions in the second copy, which induction can make.
    """
    half = (ids.shape[1] - 1) // 2
    if ids.dim() != 2 or half < 2:
        raise ValueError(f"ids must be (B, 1 + 2 * L) repeated sequences [BOS, x, x] with L >= 2, got {tuple(ids.shape)}")
    with torch.no_grad():
        hits = (model(ids).argmax(-1)[:, :-1] == ids[:, 1:]).float()
    return {"repeat_accuracy": hits[:, half + 1:].mean().item(), "first_half_accuracy": hits[:, 1:half].mean().item()}
