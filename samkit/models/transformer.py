"""Two-way transformer of the mask decoder: tokens attend to the image and the image attends
back to the tokens. Optionally guided by PerSAM (``PersamGuidance``): a target-guidance map in
the token-to-image attention of each block, and a target embedding added to the tokens."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samkit.models.common import MLPBlock


@dataclass(frozen=True, eq=False)  # holds tensors: compared by identity
class PersamGuidance:
    """PerSAM's two inputs to the decoder: target-guided attention and target-semantic
    prompting (Zhang et al., "Personalize Segment Anything Model with One Shot").

    attn_sim: 1 x 1 x 1 x (h*w) target-guidance map over the image tokens, added to the
        softmaxed token-to-image attention of every block before a second softmax.
    target_embedding: 1 x 1 x C target feature, added to the tokens.
    """

    attn_sim: torch.Tensor
    target_embedding: torch.Tensor


class TwoWayTransformer(nn.Module):
    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        point_embedding: torch.Tensor,
        guidance: PersamGuidance | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embedding, image_pe: B x C x h x w; point_embedding: B x T x C tokens;
        guidance: PerSAM's target guidance, or None for plain SAM.
        Returns the processed tokens (B x T x C) and image (B x h*w x C).
        """
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        attn_sim = None if guidance is None else guidance.attn_sim
        target = None if guidance is None else guidance.target_embedding
        query_pe = point_embedding
        if target is not None:
            # The official PerSAM code adds in place to a tensor that is also the query PE.
            query_pe = point_embedding + target
        queries = query_pe
        for i, layer in enumerate(self.layers):
            if target is not None and i > 0:
                queries = queries + target
            queries, keys = layer(queries, keys, query_pe, key_pe, attn_sim)
        q = queries + query_pe
        if target is not None:
            # Official: ``q += t`` after ``q = queries + PE``; the residual below stays without t.
            q = q + target
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys


class TwoWayAttentionBlock(nn.Module):
    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        attn_sim: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            # Layer 0: self-attention output replaces the queries (no residual, no PE).
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys, attn_sim))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        k = keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class Attention(nn.Module):
    """Attention with an optional down-projection of the embedding size for q, k and v."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _separate_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        attn_sim: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q = self._separate_heads(self.q_proj(q))
        k = self._separate_heads(self.k_proj(k))
        v = self._separate_heads(self.v_proj(v))
        if attn_sim is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            # PerSAM target-guided attention: softmax, add the prior, softmax again.
            attn = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            attn = torch.softmax(attn, dim=-1)
            attn = torch.softmax(attn + attn_sim, dim=-1)
            out = attn @ v
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))
