// Where emails go. With SMTP_URL: nodemailer's SMTP transport (one connection per message, so
// there is nothing to close). Without it — development and tests — a folder transport: nodemailer
// builds the exact message it would send (its stream transport, buffered) and we write it to
// EMAIL_DIR as one .eml file, which any mail client opens; the path is logged.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type { EmailConfig } from '../config.ts';
import type { Logger } from '../log.ts';

export interface OutgoingEmail {
  to: string;
  subject: string;
  text: string;
  html: string;
  /** Message-ID header, without angle brackets (the same on every retry of one message). */
  messageId: string;
  /** Extra headers, e.g. the template's name. */
  headers?: Record<string, string>;
}

export interface Delivery {
  transport: 'smtp' | 'folder';
  messageId: string;
  /** SMTP: the server's final answer; folder: the file written. */
  detail: string;
}

export interface EmailTransport {
  readonly kind: 'smtp' | 'folder';
  /** Where messages go, for logs (no password). */
  readonly target: string;
  send(message: OutgoingEmail): Promise<Delivery>;
}

/** A stable Message-ID for an idempotency key, in the sender's domain: retries reuse it. */
export function messageIdFor(key: string, from: string): string {
  const domain = /@([^@\s<>]+)>?\s*$/.exec(from)?.[1] ?? 'localhost';
  return `${createHash('sha256').update(key).digest('hex').slice(0, 32)}@${domain}`;
}

const fileSafe = (s: string): string => s.replace(/[^a-zA-Z0-9@._+-]+/g, '_').slice(0, 80);

export function createEmailTransport(config: EmailConfig, log: Logger): EmailTransport {
  const base = (message: OutgoingEmail) => ({
    from: config.from,
    to: message.to,
    subject: message.subject,
    text: message.text,
    html: message.html,
    messageId: `<${message.messageId}>`,
    headers: { 'Auto-Submitted': 'auto-generated', ...message.headers },
  });

  if (config.smtpUrl !== undefined) {
    const url = new URL(config.smtpUrl);
    // Bounded waits: a stuck server fails the job (it is retried) instead of holding it for minutes.
    const transporter = nodemailer.createTransport({ url: config.smtpUrl, connectionTimeout: 15_000, greetingTimeout: 15_000, socketTimeout: 60_000 });
    return {
      kind: 'smtp',
      target: `${url.protocol}//${url.host}`,
      async send(message) {
        const info = await transporter.sendMail(base(message));
        if (info.rejected.length > 0) throw new Error(`the SMTP server refused ${info.rejected.join(', ')}: ${info.response}`);
        return { transport: 'smtp', messageId: message.messageId, detail: info.response };
      },
    };
  }

  const transporter = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  return {
    kind: 'folder',
    target: config.dir,
    async send(message) {
      const info = await transporter.sendMail(base(message));
      await fs.mkdir(config.dir, { recursive: true });
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      const file = path.join(config.dir, `${stamp}-${fileSafe(message.headers?.['X-Atrium-Template'] ?? 'email')}-${fileSafe(message.to)}-${randomBytes(3).toString('hex')}.eml`);
      // Written under a temporary name and renamed: a reader never sees half a message.
      const partial = `${file}.partial`;
      await fs.writeFile(partial, info.message as Buffer);
      await fs.rename(partial, file);
      log.info({ file, to: message.to, subject: message.subject }, 'email written to a file (no SMTP_URL set)');
      return { transport: 'folder', messageId: message.messageId, detail: file };
    },
  };
}
