"""Graders for the exercises: ``check_*(your_function)``. Taught in chapter 00.

Each check builds a small fixed case (:mod:`xaicourse.testing`), runs your function on it, compares
the answer with the package's reference, and prints one line when it passes. An untouched stub is
reported as "not implemented yet" (no traceback); a wrong answer raises :class:`CheckFailed` with a
hint aimed at the likely mistake, and a notebook shows that hint, not a traceback. Every check also
verifies that your function left the model and its inputs as found (no hooks, no ``.grad``).

The package: :mod:`~xaicourse.checks.core` is the grading core (one routine, ``compare``, that
compares with the reference and walks a check's catalogue of known mistakes), and one module per
topic holds the checks, named after the package module whose method they grade:

=====================  =========================================================  =======
module                 checks                                                     chapter
=====================  =========================================================  =======
``checks.softmax``     check_softmax                                              00
``checks.saliency``    check_vanilla_gradient, check_smoothgrad                   01, 06
``checks.cam``         check_grad_cam, check_map_resolution                       02, 06
``checks.ig``          check_integrated_gradients                                 03
``checks.attention``   check_attention_rollout                                    04
``checks.interpret``   check_misclassification_stats                              05
``checks.metrics``     check_shortcut_detector, check_deletion_auc,               06, 07
                       check_max_sensitivity
``checks.beyond``      check_shapley_kernel_weight, check_rescale_multiplier,     08
                       check_lrp_epsilon
``checks.relevance``   check_attention_relevance                                  09
``checks.patching``    check_patch_module, check_direct_logit_attribution,        10
                       check_find_induction_head
``checks.concepts``    check_tcav_score, check_control_labels, check_sae_loss,    11
                       check_decoder_norm
``checks.tda``         check_per_example_gradients, check_tracin_checkpoint,      12
                       check_lds
``checks.exercises``   check_remove_evidence, check_contrastive_grad_cam,         06
                       check_occlusion, check_grad_cam_pp, check_text_ig
=====================  =========================================================  =======
"""
from ..hooks import hooks_left
from .attention import check_attention_rollout
from .beyond import check_lrp_epsilon, check_rescale_multiplier, check_shapley_kernel_weight
from .cam import check_grad_cam, check_map_resolution
from .concepts import check_control_labels, check_decoder_norm, check_sae_loss, check_tcav_score
from .core import RESULTS_ENV, CheckFailed, Mistake, compare, expect, expect_no_hooks, grader, record
from .exercises import (check_contrastive_grad_cam, check_grad_cam_pp, check_occlusion, check_remove_evidence,
                        check_text_ig)
from .ig import check_integrated_gradients
from .interpret import check_misclassification_stats
from .metrics import check_deletion_auc, check_max_sensitivity, check_shortcut_detector
from .patching import check_direct_logit_attribution, check_find_induction_head, check_patch_module
from .relevance import check_attention_relevance
from .saliency import check_smoothgrad, check_vanilla_gradient
from .softmax import check_softmax
from .tda import check_lds, check_per_example_gradients, check_tracin_checkpoint

__all__ = [
    "CheckFailed", "Mistake", "RESULTS_ENV", "check_attention_relevance", "check_attention_rollout", "check_control_labels",
    "check_contrastive_grad_cam", "check_decoder_norm", "check_direct_logit_attribution", "check_find_induction_head",
    "check_patch_module", "check_per_example_gradients", "check_grad_cam_pp", "check_occlusion", "check_text_ig", "check_deletion_auc", "check_grad_cam",
    "check_integrated_gradients", "check_lds", "check_lrp_epsilon", "check_map_resolution", "check_max_sensitivity",
    "check_misclassification_stats",
    "check_remove_evidence", "check_rescale_multiplier", "check_sae_loss", "check_shapley_kernel_weight", "check_shortcut_detector", "check_smoothgrad",
    "check_softmax", "check_tcav_score", "check_tracin_checkpoint", "check_vanilla_gradient", "compare", "expect", "expect_no_hooks", "grader",
    "hooks_left", "record",
]
