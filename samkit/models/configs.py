"""Model configurations as code: one small function builds any size of SAM or HQ-SAM."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from samkit.models.image_encoder import ImageEncoderViT
from samkit.models.mask_decoder import MaskDecoder, MaskDecoderHQ
from samkit.models.prompt_encoder import PromptEncoder
from samkit.models.sam import Sam
from samkit.models.tiny_vit import MOBILE_SAM, TinyViT, TinyViTConfig, build_tiny_vit_encoder
from samkit.models.transformer import TwoWayTransformer


@dataclass(frozen=True)
class SamConfig:
    """Every number that defines a SAM architecture."""

    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    mask_in_chans: int = 16
    num_multimask_outputs: int = 3
    iou_head_hidden_dim: int = 256
    hq: bool = False
    # A TinyViT image encoder (MobileSAM, Light HQ-SAM) instead of the ViT: the encoder_*,
    # window_size and mlp_ratio fields above are then unused, and patch_size is its stride.
    tiny_vit: TinyViTConfig | None = None

    @property
    def encoder(self) -> str:
        """The image encoder's kind: "vit" (SAM's) or "tiny_vit"."""
        return "vit" if self.tiny_vit is None else "tiny_vit"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["encoder_global_attn_indexes"] = list(self.encoder_global_attn_indexes)
        d["tiny_vit"] = None if self.tiny_vit is None else self.tiny_vit.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SamConfig:
        d = dict(d)
        d["encoder_global_attn_indexes"] = tuple(d["encoder_global_attn_indexes"])
        if d.get("tiny_vit") is not None:
            d["tiny_vit"] = TinyViTConfig.from_dict(d["tiny_vit"])
        return cls(**d)


CONFIGS: dict[str, SamConfig] = {
    "vit_b": SamConfig(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamConfig(1280, 32, 16, (7, 15, 23, 31)),
    # The bundled model: 160 px input, 10 x 10 embedding grid, narrow encoder and decoder;
    # sized so that ~1.5 h of single-thread CPU training gives thousands of steps.
    "tiny": SamConfig(
        encoder_embed_dim=192,
        encoder_depth=6,
        encoder_num_heads=3,
        encoder_global_attn_indexes=(2, 5),
        image_size=160,
        window_size=5,
        prompt_embed_dim=128,
        decoder_mlp_dim=512,
        iou_head_hidden_dim=128,
    ),
    # samkit-tiny on a 20 x 20 grid (patch 8 at 160 px): the same encoder widths, windows of
    # the same 80 px extent; warm-started from "tiny" by resampling its patch, position and
    # relative-position tables (scripts/train_tiny.sh).
    "tiny_p8": SamConfig(
        encoder_embed_dim=192,
        encoder_depth=6,
        encoder_num_heads=3,
        encoder_global_attn_indexes=(2, 5),
        image_size=160,
        patch_size=8,
        window_size=10,
        prompt_embed_dim=128,
        decoder_mlp_dim=512,
        iou_head_hidden_dim=128,
    ),
}
for _name in ("vit_b", "vit_l", "vit_h", "tiny"):
    CONFIGS["hq_" + _name] = replace(CONFIGS[_name], hq=True)
# MobileSAM (PerSAM's vit_t): TinyViT-5M with SAM's prompt encoder and decoder; Light HQ-SAM
# adds the HQ head (sam-hq calls it vit_tiny).
CONFIGS["vit_t"] = SamConfig(tiny_vit=MOBILE_SAM)
CONFIGS["hq_vit_tiny"] = replace(CONFIGS["vit_t"], hq=True)


def build_sam(config: SamConfig | str) -> Sam:
    """Build an untrained SAM (or HQ-SAM) for a configuration or a configuration name."""
    c = CONFIGS[config] if isinstance(config, str) else config
    grid = c.image_size // c.patch_size
    encoder: ImageEncoderViT | TinyViT
    if c.tiny_vit is not None:
        if c.tiny_vit.stride != c.patch_size:
            raise ValueError(
                f"patch_size {c.patch_size} must equal the TinyViT's stride {c.tiny_vit.stride}"
            )
        encoder = build_tiny_vit_encoder(c.tiny_vit, c.image_size, c.prompt_embed_dim)
        vit_dim = encoder.interm_dim
    else:
        encoder = _build_vit(c)
        vit_dim = c.encoder_embed_dim
    prompt_encoder = PromptEncoder(
        embed_dim=c.prompt_embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(c.image_size, c.image_size),
        mask_in_chans=c.mask_in_chans,
    )
    transformer = TwoWayTransformer(
        depth=c.decoder_depth,
        embedding_dim=c.prompt_embed_dim,
        mlp_dim=c.decoder_mlp_dim,
        num_heads=c.decoder_num_heads,
    )
    kwargs = dict(
        transformer_dim=c.prompt_embed_dim,
        transformer=transformer,
        num_multimask_outputs=c.num_multimask_outputs,
        iou_head_depth=3,
        iou_head_hidden_dim=c.iou_head_hidden_dim,
    )
    decoder = MaskDecoderHQ(vit_dim=vit_dim, **kwargs) if c.hq else MaskDecoder(**kwargs)
    return Sam(encoder, prompt_encoder, decoder, config=c).eval()


def _build_vit(c: SamConfig) -> ImageEncoderViT:
    return ImageEncoderViT(
        img_size=c.image_size,
        patch_size=c.patch_size,
        embed_dim=c.encoder_embed_dim,
        depth=c.encoder_depth,
        num_heads=c.encoder_num_heads,
        mlp_ratio=c.mlp_ratio,
        out_chans=c.prompt_embed_dim,
        qkv_bias=True,
        use_rel_pos=True,
        window_size=c.window_size,
        global_attn_indexes=c.encoder_global_attn_indexes,
    )
