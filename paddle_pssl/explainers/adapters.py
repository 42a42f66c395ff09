"""InterpretDL 0.8.0 interpreters that already take a whole batch and run on
Paddle 2.6 unchanged, behind the common interface. Both are expensive (many
forwards per image), so they are here for comparison, not for ImageNet scale.

* occlusion: ``OcclusionInterpreter``; a pixel's value is the sum over the
  windows covering it of p(target | x) - p(target | x with the window set to
  the baseline 0). Channels are averaged (windows span all channels).
  Cost: one forward per window position and image.
* scorecam: ``ScoreCAMInterpreter``; one forward per feature channel.

Normalisation (default ``'relu_max'``): negative part to 0, divided by the max.
"""
import numpy as np

from .base import Explainer, import_interpretdl


class OcclusionExplainer(Explainer):
    """Occlusion sensitivity (Zeiler & Fergus 2014) via InterpretDL.

    window: occluded square side in pixels; stride: its step;
    perturbations_per_eval: occluded copies per forward.
    """

    name = "occlusion"

    def __init__(self, classifier, window=32, stride=16, perturbations_per_eval=16, **kwargs):
        super().__init__(classifier, **kwargs)
        import_interpretdl()
        import paddle
        from interpretdl import OcclusionInterpreter

        self.window, self.stride = int(window), int(stride)
        self.perturbations_per_eval = int(perturbations_per_eval)
        self._interpreter = OcclusionInterpreter(classifier.model, device=paddle.get_device())

    def raw(self, images, targets, shared=None, seeds=None):
        channels = images.shape[1]
        attributions = self._interpreter.interpret(
            images, sliding_window_shapes=(channels, self.window, self.window), labels=list(map(int, targets)),
            strides=(channels, self.stride, self.stride), perturbations_per_eval=self.perturbations_per_eval,
            crop_to=None, visual=False)
        return np.asarray(attributions, np.float32).mean(1)


class ScoreCAMExplainer(Explainer):
    """Score-CAM (Wang et al. 2020) via InterpretDL, on the classifier's feature layer."""

    name = "scorecam"

    def __init__(self, classifier, **kwargs):
        super().__init__(classifier, **kwargs)
        import_interpretdl()
        import paddle
        from interpretdl import ScoreCAMInterpreter

        self._interpreter = ScoreCAMInterpreter(classifier.model, device=paddle.get_device())

    def raw(self, images, targets, shared=None, seeds=None):
        maps = self._interpreter.interpret(images, self.classifier.feature_layer_name, labels=list(map(int, targets)),
                                           visual=False)
        return np.asarray(maps, np.float32)
