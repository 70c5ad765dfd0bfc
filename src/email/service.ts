// The email service the send_email task uses: the transport and the link base from the
// configuration. `startAtrium` configures it from its Config (src/index.ts); used on its own
// (a task run outside Atrium's start), it configures itself from the environment once.
import { loadConfig, type EmailConfig } from '../config.ts';
import { createLogger, type Logger } from '../log.ts';
import { createEmailTransport, type EmailTransport } from './transport.ts';

export interface EmailService {
  transport: EmailTransport;
  from: string;
  appUrl: string;
}

let current: EmailService | undefined;

export function makeEmailService(config: EmailConfig, log: Logger): EmailService {
  return { transport: createEmailTransport(config, log.child({ component: 'email' })), from: config.from, appUrl: config.appUrl };
}

/** Sets the service every send_email job of this process uses; returns it. */
export function configureEmail(config: EmailConfig, log: Logger): EmailService {
  current = makeEmailService(config, log);
  return current;
}

export function emailService(): EmailService {
  if (!current) {
    const config = loadConfig();
    current = makeEmailService(config.email, createLogger(config.logLevel, 'email'));
  }
  return current;
}
