"""ViT-VQGAN as a ganserve family: the transformer first stage (factorised, l2-normalised codes) and the same GPT
prior, request model and sampler as VQ-GAN (``ganserve.families.vqgan``)."""

from __future__ import annotations

from ganserve.families import Family, Part
from ganserve.families.vqgan import VQRequest, VQSampler


class ViTVQGANRequest(VQRequest):
    pass


FAMILY = Family(
    name="vit_vqgan",
    generator=Part("ganserve.models.vit_vqgan:ViTVQGANConfig", "ganserve.models.vit_vqgan:ViTVQGAN"),
    parts={
        "first_stage": Part(
            "ganserve.models.vit_vqgan:ViTVQGANFirstStageConfig", "ganserve.models.vit_vqgan:ViTVQGANFirstStage"
        ),
        "prior": Part("ganserve.models.transformer:GPTPriorConfig", "ganserve.models.transformer:GPTPrior"),
    },
    discriminator="ganserve.models.vqgan:make_discriminator",
    request=ViTVQGANRequest,
    sampler=VQSampler(),
    exporter="ganserve.export.vqgan",
    training="ganserve.train.vqgan:VQGANTraining",
    description="ViT-VQGAN (Yu et al. 2022): transformer autoencoder with factorised l2-normalised codes + a GPT prior",
)
