"""Measuring explanations instead of judging them by eye: the metrics of chapter 07, by family.

Grouped as Quantus groups them (one module per family); every name is re-exported here, so
``xc.metrics.deletion_auc`` and ``xc.metrics.roar`` are all a learner needs to know.

===================  ==========================================================================
``faithfulness``     deletion_auc, insertion_auc (RISE), road + noisy_linear_imputation (ROAD)
``retraining``       roar: remove the top pixels, retrain, test (Hooker et al. 2019)
``localisation``     pointing_game, mask_energy, relevance_mass_accuracy, relevance_rank_accuracy
``randomisation``    randomization_sanity_check (model), noise_floor (seed to seed),
                     randomization_passed (the pass/fail rule), data_randomization +
                     permuted_label_models (labels)
``robustness``       max_sensitivity, local_lipschitz
``complexity``       sparseness (Gini), effective_complexity, entropy_complexity
``axiomatic``        completeness (IG's axiom), input_invariance + shifted_model (Kindermans et al.)
``badge``            report(model, method, x, target, masks): one method's "sanity badge"
===================  ==========================================================================

Map-level metrics take (B, H, W) maps (and (B, H, W) bool masks) and return one value per sample;
:func:`pixel_map` reduces a (B, C, H, W) attribution. Model-level metrics take ``method(model, x,
targets)``. Everything is seeded and runs on the input's device. Taught in chapter 07.

Every metric is an instrument: no score depends on the pixel scan order (ties are averaged:
a tied group counts by its expected share under random tie-breaking, so rotating image, map and
mask together changes nothing); an empty or constant map is "no map" (NaN for that sample and a
:class:`NoMapWarning` naming it: average with ``torch.nanmean``); a patch map (B, h, w) whose size
divides the image's is scored at its native resolution (a mask counts as each patch's share of
object pixels, a perturbation removes whole patches). See :mod:`xaicourse.metrics._common`.
"""
from ._common import NoMapWarning, pixel_map
from .axiomatic import completeness, input_invariance, shifted_model
from .complexity import effective_complexity, entropy_complexity, sparseness
from .faithfulness import PerturbationCurve, deletion_auc, insertion_auc, noisy_linear_imputation, road
from .localisation import mask_energy, pointing_game, relevance_mass_accuracy, relevance_rank_accuracy
from .randomisation import (PASS_RATIO, DataRandomization, SanityCheck, data_randomization, noise_floor,
                            permuted_label_models, randomization_passed, randomization_sanity_check)
from .badge import SanityBadge, report
from .robustness import local_lipschitz, max_sensitivity
from .retraining import RoarResult, roar

__all__ = [
    "DataRandomization", "NoMapWarning", "PASS_RATIO", "PerturbationCurve", "RoarResult", "SanityBadge", "SanityCheck",
    "completeness", "data_randomization", "deletion_auc", "effective_complexity", "entropy_complexity",
    "input_invariance", "insertion_auc", "local_lipschitz", "mask_energy", "max_sensitivity",
    "noise_floor", "noisy_linear_imputation", "permuted_label_models", "pixel_map", "pointing_game", "randomization_passed",
    "randomization_sanity_check", "relevance_mass_accuracy", "relevance_rank_accuracy", "report", "road",
    "roar", "shifted_model", "sparseness",
]
