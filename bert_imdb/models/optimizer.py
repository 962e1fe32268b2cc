"""The optimizer both Lightning modules use: AdamW with a linear warmup and decay, stepped per batch."""

import lightning as L
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup
from transformers.trainer_pt_utils import get_parameter_names

from bert_imdb.errors import UserError


def check_optimizer_settings(learning_rate: float, weight_decay: float, warmup_ratio: float) -> None:
    """Fail at construction, not at the first optimizer step (in a traceback from torch), on a learning
    rate that is not positive, a negative weight decay or a warmup share outside [0, 1)."""
    if not learning_rate > 0:
        raise UserError(f"model.learning_rate={learning_rate} must be above 0, e.g. 2e-5")
    if not weight_decay >= 0:
        raise UserError(f"model.weight_decay={weight_decay} must be 0 or more, e.g. 0.01")
    if not 0 <= warmup_ratio < 1:
        raise UserError(f"model.warmup_ratio={warmup_ratio} must lie in [0, 1), e.g. 0.1")


def adamw_with_linear_warmup(module: L.LightningModule) -> dict:
    """AdamW without weight decay on biases and LayerNorm, warmed up over `warmup_ratio` of all optimizer
    steps and decayed linearly to zero; the step count is Lightning's, so it is right for any number of
    devices, accumulation and epochs. Reads `learning_rate`, `weight_decay`, `warmup_ratio` from hparams."""
    hp, model = module.hparams, module.model
    decay = set(get_parameter_names(model, [nn.LayerNorm], ["bias"]))
    groups = [
        {"name": "decay", "params": [p for n, p in model.named_parameters() if n in decay]},
        {
            "name": "no_decay",
            "params": [p for n, p in model.named_parameters() if n not in decay],
            "weight_decay": 0.0,
        },
    ]
    # Fused: one kernel for all parameters; MiniLM's optimizer step took 17 ms instead of 83
    # (benchmarks/results/README.md). Not with gradient clipping: Lightning 2.6 refuses to clip for an
    # optimizer that unscales gradients itself (fused AdamW says it does), under mixed precision.
    clipping = bool(getattr(module.trainer, "gradient_clip_val", None))
    fused = not clipping and all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate, weight_decay=hp.weight_decay, fused=fused)
    total_steps = module.trainer.estimated_stepping_batches
    scheduler = get_linear_schedule_with_warmup(
        optimizer, num_warmup_steps=int(hp.warmup_ratio * total_steps), num_training_steps=total_steps
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def apply_optimizer_settings(module: L.LightningModule, **changed) -> None:
    """Give a resumed run's optimizer and schedule the learning rate and weight decay the user changed on
    purpose (`--resume_allow`): the checkpoint's optimizer state, restored after configure_optimizers, holds
    the old ones. The schedule goes on from its step, scaled to the new peak."""
    optimizer = module.trainer.optimizers[0]
    scheduler = module.trainer.lr_scheduler_configs[0].scheduler
    if "learning_rate" in changed:
        scheduler.base_lrs = [changed["learning_rate"]] * len(optimizer.param_groups)
        for group, lr_lambda in zip(optimizer.param_groups, scheduler.lr_lambdas, strict=True):
            group["initial_lr"] = changed["learning_rate"]
            group["lr"] = changed["learning_rate"] * lr_lambda(scheduler.last_epoch)
    if "weight_decay" in changed:
        for group in optimizer.param_groups:
            if group.get("name") == "decay":
                group["weight_decay"] = changed["weight_decay"]
