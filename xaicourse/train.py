"""Reproducible training of the small models the course ships in data/ (seeded, with progress bars).

Each section trains one artifact; rerunning it with the same seed reproduces the committed file.
"""
from __future__ import annotations


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
    import time

    import torch
    from tqdm.auto import tqdm

    from . import data, models

    if variant not in models.SHAPES_CNN_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: choose one of {', '.join(map(repr, models.SHAPES_CNN_VARIANTS))}")
    start, threads = time.time(), torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is fastest, and the result is reproducible
    try:
        torch.manual_seed(seed)
        marker = models.SHAPES_CNN_VARIANTS[variant]
        train = data.shapes(**SHAPES_CNN_SPLITS["train"], marker=marker, **models.SHAPES_CNN_DATA)
        config = dict(n_classes=len(train.classes), width=16)
        model = models.ShapesCNN(**config)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        batches = -(-len(train) // batch_size)
        bar = tqdm(total=epochs * batches, desc=f"training the {variant} shapes CNN")
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
                "variant": variant, "seed": seed, "epochs": epochs, **result},
               path or models.shapes_cnn_path(variant))
    result["seconds"] = time.time() - start
    return result


def shapes_accuracy(model, marker: float | None) -> float:
    """Accuracy of a shapes CNN on the fixed test split drawn with ``marker`` (see ``data.shapes``)."""
    import torch

    from . import data, models

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
    import torch

    from . import data, models

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
    import torch
    from tqdm.auto import tqdm

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
    import torch
    from tqdm.auto import tqdm

    model, features = text_model.model, []
    for i in tqdm(range(0, len(texts), batch_size), desc="sentence features", leave=False):
        enc = text_model.tokenizer(list(texts[i:i + batch_size]), return_tensors="pt", padding=True,
                                   truncation=True, max_length=128)
        with torch.no_grad():
            features.append(model.bert(**enc).pooler_output)
    return torch.cat(features)

