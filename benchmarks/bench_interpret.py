"""One full report per modality (chapter 05), each timed in a fresh process.

* image: top-5 + Grad-CAM + Integrated Gradients (200 steps, the interpreter's default since the 5 %
  completeness rule of chapter 03) + SmoothGrad² (50 samples) on EfficientNet-Lite0 at 224 px; the
  5 s target was set when IG ran 50 steps. The three maps are also timed alone.
* text: one sentence through TextClassifierInterpreter (LIG, 50 steps) on the offline sentiment
  classifier; target <= 2 s on CPU.
* long text: a 2,000-word review (truncated to the model's 512 tokens, with a warning): the IG path
  points go through the model in chunks sized from the memory budget; target peak RSS <= 1.5 GB
  (Captum's LayerIntegratedGradients with its default batching peaked at 4.4 GB).

    python -m benchmarks interpret
"""
from functools import partial

from .harness import measure

TITLE = "End-to-end reports (chapter 05): image <= 5 s, text <= 2 s"
TARGETS_S = {"image report": 5.0, "text report": 2.0}
TARGETS_MB = {"long text report": 1500.0}
SENTENCE = "The acting is superb, but the plot is a predictable, tedious mess."
LONG_TEXT = " ".join([SENTENCE] * 167)  # 2,004 words


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


def long_text_report():
    import warnings

    import xaicourse as xc
    from xaicourse.interpret import TextClassifierInterpreter

    interpreter = TextClassifierInterpreter(xc.models.sentiment_classifier())

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "truncated to the first 512 tokens"
            return interpreter.interpret(LONG_TEXT)

    return run


def run() -> str:
    cases = {"image report": "image_report", "  Grad-CAM only": "image_gradcam", "  IG only (200 steps, the default)": "image_ig",
             "  SmoothGrad 50 only": "image_smoothgrad", "text report": "text_report",
             "long text report": "long_text_report"}
    lines = ["| report | median time (s) | target (s) | peak RSS (MB) | target RSS (MB) | within target |",
             "|---|---:|---:|---:|---:|---|"]
    for label, case in cases.items():
        m = measure(f"benchmarks.bench_interpret:{case}", repeat=1 if case == "long_text_report" else 3)
        target, target_mb = TARGETS_S.get(label), TARGETS_MB.get(label)
        met = [m.median_s <= target] if target else []
        met += [m.peak_rss_mb <= target_mb] if target_mb else []
        verdict = "" if not met else ("yes" if all(met) else "NO")
        lines.append(f"| {label} | {m.median_s:.2f} | {target or ''} | {m.peak_rss_mb:.0f} | {target_mb or ''} | {verdict} |")
    return "\n".join(lines)
