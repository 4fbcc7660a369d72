-- The payment an order's refund was asked for (issue 16 follow-up): a PENDING_PAYMENT order whose
-- mismatched payment (wrong amount or currency) the shop sent back becomes REFUNDED when the
-- provider's `charge.refunded` of THAT payment arrives, and only then (a refund of a payment the
-- shop never asked to give back moves nothing). Written with `refund_reason`, in the same
-- transaction as the RefundRequired message; the last such payment of the order wins.
-- Guarantees: runs in the migration's one transaction; existing rows get NULL (no payment).
ALTER TABLE orders ADD COLUMN refund_payment_id TEXT;
