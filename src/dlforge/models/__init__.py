"""Networks, encoders and the inference package shared by training, the registry
and serving.

Serving imports only this package (torch, safetensors), never dlforge.train. A
network is any ``torch.nn.Module`` that ``model.net._target_`` names; a model
package records its class path and carries the project code that defines it
(:mod:`dlforge.models.source`), so loading one needs no registry of names.
"""
