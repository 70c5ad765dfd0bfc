// The webhook signature: `Atrium-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
// `<t>.<raw body>` with the endpoint's secret, like the payment providers do. The timestamp is
// signed too, so a receiver can refuse replays of old deliveries (see verifyWebhookSignature).
// docs/DATA_FLOWS.md ("Webhooks") shows a receiver verifying it.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'Atrium-Signature';

export function signWebhook(secret: string, body: string, timestampSeconds = Math.floor(Date.now() / 1000)): string {
  const mac = createHmac('sha256', secret).update(`${timestampSeconds}.${body}`).digest('hex');
  return `t=${timestampSeconds},v1=${mac}`;
}

/**
 * Verifies a signature header against the raw body (the exact bytes received, before any JSON
 * parsing). Refuses a timestamp further than `toleranceSeconds` from now. Accepts any of several
 * `v1=` values (there may be more than one while a secret is being rotated).
 */
export function verifyWebhookSignature(
  secret: string,
  header: string | undefined,
  body: string,
  options: { toleranceSeconds?: number; nowSeconds?: number } = {},
): boolean {
  if (!header) return false;
  const parts = header.split(',').map((p) => p.trim().split('='));
  const t = Number(parts.find(([k]) => k === 't')?.[1]);
  const signatures = parts.filter(([k]) => k === 'v1').map(([, v]) => v ?? '');
  if (!Number.isInteger(t) || signatures.length === 0) return false;
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > (options.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${t}.${body}`).digest('hex'));
  return signatures.some((s) => s.length === expected.length && timingSafeEqual(Buffer.from(s), expected));
}
