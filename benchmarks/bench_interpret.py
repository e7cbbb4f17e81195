"""One full report per modality (chapter 05), each timed in a fresh process.

* image: top-5 + Grad-CAM + Integrated Gradients (50 steps) + SmoothGrad (50 samples) on
  EfficientNet-Lite0 at 224 px; target <= 5 s on CPU. The three maps are also timed alone.
* text: one sentence through TextClassifierInterpreter (LIG, 50 steps) on the offline sentiment
  classifier; target <= 2 s on CPU.

    python -m benchmarks interpret
"""
from functools import partial

from .harness import measure

TITLE = "End-to-end reports (chapter 05): image <= 5 s, text <= 2 s"
TARGETS_S = {"image report": 5.0, "text report": 2.0}
SENTENCE = "The acting is superb, but the plot is a predictable, tedious mess."


def _image_interpreter(methods):
    import xaicourse as xc
    from xaicourse.interpret import ImageClassifierInterpreter

    photo = xc.data.image("cat")
    return partial(ImageClassifierInterpreter(xc.models.imagenet_cnn()).interpret, photo, methods)


def image_report():
    return _image_interpreter(("gradcam", "ig", "smoothgrad"))


def image_gradcam():
    return _image_interpreter(("gradcam",))


def image_ig():
    return _image_interpreter(("ig",))


def image_smoothgrad():
    return _image_interpreter(("smoothgrad",))


def text_report():
    import xaicourse as xc
    from xaicourse.interpret import TextClassifierInterpreter

    return partial(TextClassifierInterpreter(xc.models.sentiment_classifier()).interpret, SENTENCE)


def run() -> str:
    cases = {"image report": "image_report", "  Grad-CAM only": "image_gradcam", "  IG 50 only": "image_ig",
             "  SmoothGrad 50 only": "image_smoothgrad", "text report": "text_report"}
    lines = ["| report | median time (s) | target (s) | within target | peak RSS (MB) |", "|---|---:|---:|---|---:|"]
    for label, case in cases.items():
        m = measure(f"benchmarks.bench_interpret:{case}")
        target = TARGETS_S.get(label)
        verdict = "" if target is None else ("yes" if m.median_s <= target else "NO")
        lines.append(f"| {label} | {m.median_s:.2f} | {target or ''} | {verdict} | {m.peak_rss_mb:.0f} |")
    return "\n".join(lines)
