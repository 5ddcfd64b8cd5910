"""Feedback and local plasticity (FLP, Lindsey & Litwin-Kumar 2020): meta-learning a local learning rule.

- :mod:`.lifetime`: one lifetime step (:func:`flp_step`, :func:`sgd_step`) and whole lifetimes, as pure functions;
- :mod:`.learners`: what meta-learning optimises (:class:`FLPLearner`, :class:`FeatureReuseLearner`, the paper's
  gradient-based baseline :class:`GradientLearner` with a fixed inner learning rate, and the stronger
  :class:`MetaSGDLearner`);
- :mod:`.meta`: meta-training with Adam through the lifetime, exact checkpoint/resume (:func:`meta_fit`);
- :mod:`.sine`, :mod:`.few_shot`: task samplers (incremental sine waves; online few-shot episodes from MNIST or a
  user-supplied Omniglot directory);
- :mod:`.experiment`: configurations and runs; :mod:`.analysis`: interference, gradient alignment, update sizes;
- :mod:`.sweeps`: choosing settings on validation episodes (never on meta-test episodes);
- :mod:`.reproduce`: the paper's full setting (``reproduce_flp_sine``) and long method comparisons (not imported
  here, so that ``python -m credit_tutorial.flp.reproduce`` runs it as a script).
"""

from .episode import Episode, stack_episodes
from .experiment import FewShotConfig, MetaConfig, SineConfig, meta_test, meta_train, presets
from .learners import FeatureReuseLearner, FLPLearner, GradientLearner, MetaSGDLearner
from .lifetime import flp_step, run_lifetime, sgd_step
from .meta import MetaTrainingDiverged, evaluate, meta_fit, meta_optimizer

__all__ = [
    "Episode", "FLPLearner", "FeatureReuseLearner", "FewShotConfig", "GradientLearner", "MetaConfig",
    "MetaSGDLearner", "MetaTrainingDiverged", "SineConfig", "evaluate", "flp_step", "meta_fit", "meta_optimizer",
    "meta_test", "meta_train", "presets", "run_lifetime", "sgd_step", "stack_episodes",
]
