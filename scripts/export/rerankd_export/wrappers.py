"""The modules that are traced: the model behind rerankd's forward(input_ids, attention_mask[,
token_type_ids]) -> float32 [batch] raw scores.

  CrossEncoderWithTypes  BERT family (ms-marco cross-encoders): logits[:, 0], with token type ids
  CrossEncoderNoTypes    XLM-RoBERTa / RoBERTa (bge-reranker-*): logits[:, 0], type ids all 0
  PairCosine             a bi-encoder behind the cross-encoder interface (all-MiniLM-L6-v2)

Each is built twice (build()): ready_mask=True is traced, and hands the model a ready 4-D boolean mask
(encoder_attention_mask) so that no device constant enters the trace; ready_mask=False calls the
model the stock way, with the 2-D mask, and is the eager reference every check compares against.
Owns: what the server's forward means. Must never: call transformers' mask builder in the traced path
(it freezes torch.device("cpu") into the trace: issue 13).
"""

import torch


def build(mode, uses_tt, model, cls_id, pad_id):
    """(traced wrapper, eager reference, activation, mode name) for rerankd.json."""
    if mode == "pair":
        wrapper, reference = (PairCosine(model, cls_id, pad_id, ready_mask=r) for r in (True, False))
        activation, mode_name = "cosine01", "pair-cosine"
    elif uses_tt:
        wrapper, reference = (CrossEncoderWithTypes(model, ready_mask=r) for r in (True, False))
        activation, mode_name = "sigmoid", "cross-encoder"
    else:
        wrapper, reference = (CrossEncoderNoTypes(model, ready_mask=r) for r in (True, False))
        activation, mode_name = "sigmoid", "cross-encoder"
    wrapper.eval()
    reference.eval()
    return wrapper, reference, activation, mode_name


def select_inputs(uses_tt, ids, mask, types):
    """The forward's arguments: token_type_ids only for a model that takes them."""
    return (ids, mask, types) if uses_tt else (ids, mask)


def encoder_attention_mask(attention_mask):
    """(batch, seq) 0/1 padding mask -> the (batch, 1, seq, seq) boolean mask sdpa attends with.

    This is the mask transformers' sdpa_mask builds for an encoder (True where a query may attend to a
    key: every real token, no padding), built from the input tensor alone. transformers 5.x takes a
    4-D mask as-is (masking_utils._preprocess_mask_arguments returns early for it), so the trace holds
    no mask builder. That builder creates index ranges with torch.arange(..., device=<the trace's
    device>) and moves the mask with .to(<device>): a trace freezes both into torch.device("cpu")
    constants, and the exported model then fails on CUDA at its first batch (issue 13).
    """
    n = attention_mask.shape[1]
    return attention_mask.to(torch.bool)[:, None, None, :].expand(-1, 1, n, -1)


class CrossEncoderWithTypes(torch.nn.Module):
    """forward(input_ids, attention_mask, token_type_ids) -> logits[:, 0] (BERT family).

    ready_mask=True (what is traced) hands the model the 4-D mask of encoder_attention_mask;
    ready_mask=False calls it the stock way, with the 2-D mask: the eager reference of the checks.
    """

    def __init__(self, model, ready_mask=True):
        super().__init__()
        self.model = model
        self.ready_mask = ready_mask

    def forward(self, input_ids, attention_mask, token_type_ids):
        mask = encoder_attention_mask(attention_mask) if self.ready_mask else attention_mask
        out = self.model(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids)
        return out.logits[:, 0].float()


class CrossEncoderNoTypes(torch.nn.Module):
    """forward(input_ids, attention_mask) -> logits[:, 0] (XLM-RoBERTa / RoBERTa: type ids are all 0).

    ready_mask as in CrossEncoderWithTypes.
    """

    def __init__(self, model, ready_mask=True):
        super().__init__()
        self.model = model
        self.ready_mask = ready_mask

    def forward(self, input_ids, attention_mask):
        token_type_ids = torch.zeros_like(input_ids)
        mask = encoder_attention_mask(attention_mask) if self.ready_mask else attention_mask
        out = self.model(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids)
        return out.logits[:, 0].float()


class PairCosine(torch.nn.Module):
    """Bi-encoder behind the cross-encoder interface.

    In:  [CLS] q [SEP] d [SEP] (type ids 0 ... 0 1 ... 1, then padding), attention_mask.
    The query half is the tokens with mask 1 and type 0; the document half is the tokens with mask 1
    and type 1, with a [CLS] column prepended. Both halves run as one 2*batch forward with their own
    masks, position ids restarting at 0 and type ids 0; mean pooling, L2 norm, row-wise dot product.
    ready_mask as in CrossEncoderWithTypes.
    """

    def __init__(self, model, cls_id: int, pad_id: int, ready_mask=True):
        super().__init__()
        self.model = model
        self.cls_id = int(cls_id)
        self.pad_id = int(pad_id)
        self.ready_mask = ready_mask

    def forward(self, input_ids, attention_mask, token_type_ids):
        batch = input_ids.shape[0]
        mask = attention_mask.to(torch.int64)
        q_mask = mask * (token_type_ids == 0).to(torch.int64)
        d_mask = mask * (token_type_ids != 0).to(torch.int64)
        first = input_ids[:, :1]
        cls_col = torch.full_like(first, self.cls_id)
        pad_col = torch.full_like(first, self.pad_id)
        ones_col = torch.ones_like(first)
        zeros_col = torch.zeros_like(first)
        # query half: [CLS] q [SEP] + one padding column at the end (to match the doc half's width)
        q_ids = torch.cat([input_ids, pad_col], dim=1)
        q_m = torch.cat([q_mask, zeros_col], dim=1)
        # document half: extra [CLS] column first, then d [SEP] (query tokens masked out)
        d_ids = torch.cat([cls_col, input_ids], dim=1)
        d_m = torch.cat([ones_col, d_mask], dim=1)
        ids = torch.cat([q_ids, d_ids], dim=0)
        m = torch.cat([q_m, d_m], dim=0)
        position_ids = (torch.cumsum(m, dim=1) - 1).clamp(min=0)
        out = self.model(
            input_ids=ids,
            attention_mask=encoder_attention_mask(m) if self.ready_mask else m,
            token_type_ids=torch.zeros_like(ids),
            position_ids=position_ids,
        ).last_hidden_state
        mf = m.unsqueeze(-1).to(out.dtype)
        emb = (out * mf).sum(dim=1) / mf.sum(dim=1).clamp(min=1e-9)
        emb = torch.nn.functional.normalize(emb, p=2.0, dim=1)
        return (emb[:batch] * emb[batch:]).sum(dim=1).float()
