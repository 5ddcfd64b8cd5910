"""Credit assignment through time (Lansdell et al., Fig. 4): the delayed-XOR stream, a vanilla RNN, truncated
BPTT, feedback alignment through time and feedback learned by node perturbation through time."""

from .network import RNN, RecurrentTrace
from .rules import (BPTT, RULES, FeedbackAlignmentThroughTime, FixedFeedbackSweep, LearnedFeedbackThroughTime,
                    PerturbationThroughTime, ReadoutOnly, RecurrentCredit, ThroughTimeRule, backward_through_time,
                    make_rule, perturb_through_time, regressors, step_losses, transposed_weights, weight_gradients,
                    window_loss)
from .task import XORStream, delayed_xor, xor_accuracy
from .training import (StreamConfig, angles_through_time, clip_gradients, evaluate_stream, select_copies, train_rule,
                       train_stream)

__all__ = ["RNN", "RecurrentTrace", "BPTT", "RULES", "FeedbackAlignmentThroughTime", "FixedFeedbackSweep",
           "LearnedFeedbackThroughTime", "PerturbationThroughTime", "ReadoutOnly", "RecurrentCredit",
           "ThroughTimeRule", "backward_through_time", "make_rule", "perturb_through_time", "regressors",
           "step_losses", "transposed_weights", "weight_gradients", "window_loss", "XORStream", "delayed_xor",
           "xor_accuracy", "StreamConfig", "angles_through_time", "clip_gradients", "evaluate_stream",
           "select_copies", "train_rule", "train_stream"]
