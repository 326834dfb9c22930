import pytest
import torch

from scl_ray.config import ModelConfig, load_config
from scl_ray.diffusion.denoiser import Denoiser, count_parameters, sinusoidal_embedding

FRAMES, FEATURES, TOKENS, TEXT_DIM = 30, 263, 6, 384


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = ModelConfig(preset="tiny", layers=2, width=64, heads=4, ff_size=128, dropout=0.0)
    return Denoiser(config, TEXT_DIM, FEATURES, FRAMES).eval()


@pytest.fixture()
def inputs():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, FRAMES, FEATURES, generator=g)
    t = torch.tensor([0, 500, 999])
    text_emb = torch.randn(3, TOKENS, TEXT_DIM, generator=g)
    text_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] * 2 + [False] * 4])
    frame_mask = torch.arange(FRAMES) < torch.tensor([30, 20, 11])[:, None]
    return x, t, text_emb, text_mask, frame_mask


def test_mdm_preset_has_the_papers_size():
    config = load_config(None, ["model.preset=mdm"]).model
    parameters = count_parameters(Denoiser(config))
    assert abs(parameters - 17.9e6) / 17.9e6 < 0.05, parameters


def test_sinusoidal_embedding_is_bounded_and_distinct():
    table = sinusoidal_embedding(torch.arange(200), 64)
    assert table.shape == (200, 64) and table.abs().max() <= 1
    distances = torch.cdist(table, table) + torch.eye(200)
    assert distances.min() > 0.1


@torch.no_grad()
def test_output_shape_and_zero_padded_frames(model, inputs):
    out = model(*inputs)
    assert out.shape == (3, FRAMES, FEATURES) and torch.isfinite(out).all()
    frame_mask = inputs[-1]
    assert (out[~frame_mask] == 0).all() and (out[frame_mask] != 0).any(-1).all()


@torch.no_grad()
def test_padded_frames_and_tokens_cannot_change_real_frames(model, inputs):
    x, t, text_emb, text_mask, frame_mask = inputs
    reference = model(*inputs)
    noisy_x = torch.where(frame_mask[..., None], x, 100 * torch.randn_like(x))
    noisy_text = torch.where(text_mask[..., None], text_emb, 100 * torch.randn_like(text_emb))
    changed = model(noisy_x, t, noisy_text, text_mask, frame_mask)
    torch.testing.assert_close(changed, reference, rtol=1e-5, atol=1e-5)
    # The masks are what protects them: unmasking the padded frames changes the output.
    unmasked = model(noisy_x, t, noisy_text, text_mask, torch.ones_like(frame_mask))
    assert (unmasked[frame_mask] - reference[frame_mask]).abs().max() > 1e-3


@torch.no_grad()
def test_conditioning_inputs_matter(model, inputs):
    x, t, text_emb, text_mask, frame_mask = inputs
    reference = model(*inputs)
    other_text = model(x, t, torch.randn_like(text_emb), text_mask, frame_mask)
    other_time = model(x, t.flip(0), text_emb, text_mask, frame_mask)
    assert (other_text - reference).abs().max() > 1e-3
    assert (other_time - reference).abs().max() > 1e-3


@torch.no_grad()
def test_force_uncond_is_the_empty_caption(model, inputs):
    x, t, text_emb, text_mask, frame_mask = inputs
    uncond = model(*inputs, force_uncond=True)
    empty = model(x, t, text_emb, torch.zeros_like(text_mask), frame_mask)
    torch.testing.assert_close(uncond, empty)
    # Without a caption the text content is irrelevant.
    torch.testing.assert_close(model(x, t, torch.randn_like(text_emb), text_mask, frame_mask, force_uncond=True),
                               uncond, rtol=1e-5, atol=1e-5)
    # Per-row dropping equals dropping those rows alone.
    rows = torch.tensor([False, True, False])
    mixed = model(*inputs, force_uncond=rows)
    conditional = model(*inputs)
    torch.testing.assert_close(mixed[rows], uncond[rows], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mixed[~rows], conditional[~rows], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_each_motion_is_denoised_independently_of_its_batch(model, inputs):
    batched = model(*inputs)
    alone = model(*(tensor[1:2] for tensor in inputs))
    torch.testing.assert_close(alone[0], batched[1], rtol=1e-5, atol=1e-5)


def test_wrong_shapes_are_explained(model, inputs):
    x, t, text_emb, text_mask, frame_mask = inputs
    too_many_tokens = torch.zeros(3, 40, TEXT_DIM)
    with pytest.raises(ValueError, match="text_max_tokens"):
        model(x, t, too_many_tokens, torch.ones(3, 40, dtype=torch.bool), frame_mask)
    with pytest.raises(ValueError, match="x must be"):
        model(x[..., :100], t, text_emb, text_mask, frame_mask)
    with pytest.raises(ValueError, match="frame_mask"):
        model(x, t, text_emb, text_mask, frame_mask[:, :5])
