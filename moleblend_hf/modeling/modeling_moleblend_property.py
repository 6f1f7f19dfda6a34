"""Molecular property prediction on top of the MoleBLEND encoder (fine-tuning).

Depends on torch and transformers only (relative imports), so it ships as Hub remote code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import can_return_tuple, logging

from .configuration_moleblend import MoleBlendConfig
from .modeling_moleblend import PRETRAINING_HEAD_KEYS, MoleBlendModel, MoleBlendPreTrainedModel

logger = logging.get_logger(__name__)
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


POOLINGS = ("graph", "mean", "graph_mean")


class MoleBlendPropertyHead(nn.Module):
    """Readout -> (dense -> activation -> dropout) x depth -> out.

    `config.classifier_pooling`: `"graph"` (the graph token, as the official head), `"mean"` (mean of the atom
    states) or `"graph_mean"` (both, concatenated). `config.classifier_num_layers`: hidden layers (1 = official)."""

    def __init__(self, config: MoleBlendConfig):
        super().__init__()
        self.pooling = getattr(config, "classifier_pooling", None) or "graph"
        if self.pooling not in POOLINGS:
            raise ValueError(f"config.classifier_pooling must be one of {POOLINGS}, got {self.pooling!r}")
        depth = getattr(config, "classifier_num_layers", None) or 1
        width = config.hidden_size * (2 if self.pooling == "graph_mean" else 1)
        # molecule-level descriptors (processor key `molecule_features`), standardised with training statistics
        self.molecule_feature_size = int(getattr(config, "molecule_feature_size", 0) or 0)
        # saved only when there are features: models without them keep exactly their old weight files
        saved = self.molecule_feature_size > 0
        self.register_buffer("feature_mean", torch.zeros(self.molecule_feature_size), persistent=saved)
        self.register_buffer("feature_std", torch.ones(self.molecule_feature_size), persistent=saved)
        width += self.molecule_feature_size
        self.dense = nn.Linear(width, config.hidden_size)
        self.deeper = nn.ModuleList([nn.Linear(config.hidden_size, config.hidden_size) for _ in range(depth - 1)])
        self.activation = ACT2FN[config.hidden_act]
        dropout = getattr(config, "classifier_dropout", None)
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.out = nn.Linear(config.hidden_size, config.num_labels)

    def pool(self, last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, N + 1, D] states (graph token first), [B, N] mask -> [B, D] or [B, 2D]."""
        graph = last_hidden_state[:, 0]
        if self.pooling == "graph":
            return graph
        mask = attention_mask.to(last_hidden_state.dtype).unsqueeze(-1)
        mean = (last_hidden_state[:, 1:] * mask).sum(1) / mask.sum(1).clamp(min=1)
        return mean if self.pooling == "mean" else torch.cat([graph, mean], dim=-1)

    def scale_features(self, molecule_features: torch.Tensor) -> torch.Tensor:
        """[B, F] raw features -> standardised, missing (NaN) values at the training mean, clipped to +-10."""
        scaled = (molecule_features.float() - self.feature_mean) / self.feature_std
        return torch.nan_to_num(scaled, nan=0.0).clamp(-10.0, 10.0)

    def forward(self, pooled: torch.Tensor, molecule_features: torch.Tensor | None = None) -> torch.Tensor:
        if self.molecule_feature_size:
            if molecule_features is None or molecule_features.shape[-1] != self.molecule_feature_size:
                got = None if molecule_features is None else tuple(molecule_features.shape)
                raise ValueError(
                    f"this model reads {self.molecule_feature_size} molecule features per molecule "
                    f"(`molecule_features` from its processor), got {got}: build the processor with "
                    f"MoleBlendProcessor.from_pretrained(model_dir) or from_config(model.config)"
                )
            pooled = torch.cat([pooled, self.scale_features(molecule_features).to(pooled.dtype)], dim=-1)
        hidden = self.dropout(self.activation(self.dense(pooled)))
        for layer in self.deeper:
            hidden = self.dropout(self.activation(layer(hidden)))
        return self.out(hidden)


class MoleBlendForPropertyPrediction(MoleBlendPreTrainedModel):
    """MoleBLEND with a graph-level head for regression or classification.

    `config.problem_type`:
    - `"regression"`: `num_labels` targets. Training standardises them with `config.label_mean` /
      `config.label_std` (set them from the training split, e.g. with `set_label_statistics`); the loss is the MSE
      of standardised values and `logits` are returned in the original units, also after save/load.
    - `"multi_label_classification"`: `num_labels` binary tasks (one column per task); BCE with logits.
    - `"single_label_classification"`: one label among `num_labels` classes; cross-entropy.
    Missing labels (NaN) are left out of the loss for regression and multi-label tasks.
    """

    # The loss is a mean over the labels present in the batch: the Trainer must not rescale it.
    accepts_loss_kwargs = False
    _keys_to_ignore_on_load_unexpected = PRETRAINING_HEAD_KEYS

    def __init__(self, config: MoleBlendConfig):
        super().__init__(config)
        if config.problem_type is None and config.num_labels == 1:
            config.problem_type = "regression"  # what transformers infers for a single label
        if config.problem_type is not None and config.problem_type not in PROBLEM_TYPES:
            raise ValueError(
                f"config.problem_type must be one of {PROBLEM_TYPES} (or None: inferred from the first "
                f"labels, the transformers way), got {config.problem_type!r}"
            )
        self.moleblend = MoleBlendModel(config)
        self.head = MoleBlendPropertyHead(config)
        statistics_size = config.num_labels if config.problem_type == "regression" else 0
        for name, default in (("label_mean", 0.0), ("label_std", 1.0)):
            values = getattr(config, name, None) or [default] * statistics_size
            if len(values) != statistics_size:
                raise ValueError(f"config.{name} has {len(values)} values for {statistics_size} regression targets")
            setattr(config, name, [float(v) for v in values])
        if any(s <= 0 for s in config.label_std):
            raise ValueError(f"config.label_std must be positive, got {config.label_std}")
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`; also notes when the checkpoint had no head weights (a pretraining or
        encoder checkpoint: transformers then initialises the head at random), see `has_trained_head`."""
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        # the output layer's weights, not any head key: the descriptor statistics (buffers) are absent from models
        # fine-tuned before they existed
        if "head.out.weight" in info["missing_keys"]:
            model.__dict__["_random_head"] = model.head.out.weight.detach().to("cpu", copy=True)
        return (model, info) if output_loading_info else model

    @property
    def has_trained_head(self) -> bool:
        """False while the head still holds the random weights it was given because its checkpoint had none (its
        predictions would be noise); True for a fine-tuned checkpoint, and once training has changed the head."""
        initial = self.__dict__.get("_random_head")
        weight = self.head.out.weight
        if initial is None or not isinstance(weight, torch.Tensor) or weight.is_meta:
            return True
        return not torch.equal(weight.detach().to("cpu"), initial)

    def set_label_statistics(self, labels: torch.Tensor) -> None:
        """Store per-target mean and std of regression labels [num_rows, num_labels] (NaN ignored) in the config."""
        mean, std = _column_statistics(labels, self.config.num_labels, smallest_std=0.0)
        self.config.label_mean = mean.tolist()
        self.config.label_std = std.tolist()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, MoleBlendPropertyHead):  # buffers missing from a pretraining checkpoint
            init.zeros_(module.feature_mean)
            init.ones_(module.feature_std)

    def set_molecule_feature_statistics(self, features: torch.Tensor) -> None:
        """Store the per-feature mean and std of raw training-row features [num_rows, F] (NaN ignored; constant
        features get std 1), used to standardise `molecule_features` in every forward and saved with the weights."""
        mean, std = _column_statistics(features, self.head.molecule_feature_size, smallest_std=1e-6)
        with torch.no_grad():
            self.head.feature_mean.copy_(mean.float())
            self.head.feature_std.copy_(std.float())

    def _label_statistics(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """`config.label_mean`, `config.label_std` as float32 [num_labels] tensors on `device`, made once per value
        (a copy from the host in every forward would wait on the GPU, and cannot be captured in a CUDA graph).
        Made outside inference mode, so that a training step after an inference can save them for backward; the
        cache is replaced, never changed in place (DataParallel replicas share it)."""
        key = (tuple(self.config.label_mean), tuple(self.config.label_std), device)
        cache = self.__dict__.get("_label_statistics_cache", {})
        if key not in cache:
            with torch.inference_mode(False):
                made = (
                    torch.tensor(key[0], dtype=torch.float32, device=device),
                    torch.tensor(key[1], dtype=torch.float32, device=device),
                )
            # statistics set anew: the old values are not needed again
            cache = {**{k: v for k, v in cache.items() if k[:2] == key[:2]}, key: made}
            self.__dict__["_label_statistics_cache"] = cache
        return cache[key]

    @can_return_tuple
    def forward(
        self,
        atom_features: torch.Tensor,
        attention_mask: torch.Tensor,
        degree: torch.Tensor,
        shortest_path: torch.Tensor | None = None,
        path_bonds: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        has_3d: torch.Tensor | None = None,
        molecule_features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        r"""
        Args:
            labels: regression [B, num_labels] float (NaN = missing); multi-label [B, num_labels] 0/1 (NaN =
                missing); single-label [B] class indices.
            kwargs: `output_hidden_states`, `output_attentions`, passed to the encoder; `return_dict=False` gives a
                tuple (loss first when labels are given, then logits, then what was asked for).

        Returns:
            `SequenceClassifierOutput` with `logits` [B, num_labels] (regression: in the labels' original units)
            and `loss` when labels are given.
        """
        encoded = self.moleblend(
            atom_features, attention_mask, degree, shortest_path, path_bonds, positions, has_3d, **kwargs
        )
        raw = self.head(self.head.pool(encoded.last_hidden_state, attention_mask), molecule_features)
        config = self.config
        logits = raw
        if config.problem_type == "regression":
            mean, std = self._label_statistics(raw.device)
            logits = raw.float() * std + mean  # in float32: label units can be large (bf16 steps of 2 near 400)
        loss = None
        if labels is not None:
            loss = self._loss(raw, labels)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=encoded.hidden_states, attentions=encoded.attentions
        )

    def _loss(self, raw: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        config = self.config
        if config.problem_type is None:  # transformers' rule: integer labels -> one class each, else multi-label
            integer = labels.dtype in (torch.long, torch.int, torch.int16, torch.uint8)
            config.problem_type = "single_label_classification" if integer else "multi_label_classification"
        if (
            config.problem_type == "regression"
            and self.training
            and not getattr(self, "_warned_statistics", False)
            and all(m == 0.0 for m in config.label_mean)
            and all(s == 1.0 for s in config.label_std)
        ):
            logger.warning(
                "regression labels are used unscaled: call model.set_label_statistics(train_labels) "
                "before training (moleblend finetune does this) for standardised targets"
            )
            self._warned_statistics = True
        if config.problem_type == "single_label_classification":
            return F.cross_entropy(raw.float(), labels.long().view(-1))
        labels = labels.float().view(raw.shape)
        present = ~torch.isnan(labels)
        if config.problem_type == "regression":
            mean, std = self._label_statistics(labels.device)
            target = (labels - mean) / std
            per_entry = (raw.float() - torch.where(present, target, 0.0)) ** 2
        else:
            per_entry = F.binary_cross_entropy_with_logits(
                raw.float(), torch.where(present, labels, 0.0), reduction="none"
            )
        # mean over present labels only; a batch without any label contributes 0 (still in the graph)
        return (per_entry * present).sum() / present.sum().clamp(min=1)


def _column_statistics(values: torch.Tensor, columns: int, smallest_std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and sample std of [rows, columns] values, NaN ignored (float64); a std not above
    `smallest_std` (a constant column) becomes 1."""
    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1, columns)
    present = ~torch.isnan(values)
    counts = present.sum(0).clamp(min=1)
    mean = torch.where(present, values, 0).sum(0) / counts
    std = (torch.where(present, (values - mean) ** 2, 0).sum(0) / (counts - 1).clamp(min=1)).sqrt()
    return mean, torch.where(std > smallest_std, std, torch.ones_like(std))


__all__ = ["MoleBlendForPropertyPrediction", "MoleBlendPropertyHead"]
