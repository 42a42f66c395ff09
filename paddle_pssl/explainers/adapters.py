"""InterpretDL 0.8.0 interpreters that already take a whole batch and run on
Paddle 2.6 unchanged, behind the common interface. Both are expensive (many
forwards per image), so they are here for comparison, not for ImageNet scale.

* occlusion: ``OcclusionInterpreter``; a pixel's value is the sum over the
  windows covering it of p(target | x) - p(target | x with the window set to
  the baseline 0). Channels are averaged (windows span all channels).
  Cost: one forward per window position and image.
* scorecam: ``ScoreCAMInterpreter``; one forward per feature channel.

With the runner's ``'inference'`` engine, the interpreters' forward-only
passes (the occluded / masked copies) go through Paddle Inference: their
``predict_fn`` is replaced by one that calls the runner (InterpretDL keeps a
preset ``predict_fn``); Score-CAM's one feature-map pass stays in dygraph.

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

    def _predict(self, data, label):
        # InterpretDL's Input-Output predict_fn contract: (probabilities, labels, anything)
        probs = self.runner.probabilities(np.asarray(data, np.float32))
        return probs, (probs.argmax(1) if label is None else label), None

    def raw(self, images, targets, shared=None, seeds=None):
        if self.runner.engine == "inference":
            self._interpreter.predict_fn = self._predict
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

    def _predict(self, data):
        # InterpretDL's intermediate-layer contract: ([feature maps], probabilities, predictions);
        # the first call of an interpret() wants the feature maps, the later ones the probabilities
        data = np.asarray(data, np.float32)
        if self._want_features:
            self._want_features = False
            shared = self.runner.feature_pass(data)
            probs = shared.probabilities
            return [shared.features.numpy()], probs, probs.argmax(1)
        probs = self.runner.probabilities(data)
        return None, probs, probs.argmax(1)

    def raw(self, images, targets, shared=None, seeds=None):
        if self.runner.engine == "inference":
            self._interpreter.predict_fn = self._predict
            self._want_features = True
        maps = self._interpreter.interpret(images, self.classifier.feature_layer_name, labels=list(map(int, targets)),
                                           visual=False)
        return np.asarray(maps, np.float32)
