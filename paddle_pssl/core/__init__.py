from .train import train, attach_pixel_weight_hook, loss_computation
