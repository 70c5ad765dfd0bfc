// A tiny SMTP receiver for tests (node:net, no dependency): enough of RFC 5321 for nodemailer —
// EHLO/HELO, AUTH PLAIN, MAIL FROM, RCPT TO, DATA (with dot-unstuffing), RSET, NOOP, QUIT.
// No TLS: nodemailer sends in the clear when the server does not offer STARTTLS.
// Recipients whose address starts with "reject" are refused (550), to test refusals.
import net from 'node:net';

export interface ReceivedMail {
  /** Credentials presented with AUTH PLAIN, if any. */
  auth: { user: string; pass: string } | null;
  from: string;
  to: string[];
  /** The message as received (headers and body, CRLF line ends). */
  data: string;
}

export interface SmtpServer {
  port: number;
  messages: ReceivedMail[];
  close(): Promise<void>;
}

export async function startSmtpServer(): Promise<SmtpServer> {
  const messages: ReceivedMail[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffer = '';
    let auth: ReceivedMail['auth'] = null;
    let mail: ReceivedMail | null = null;
    let dataLines: string[] | null = null;
    let awaitingAuth = false;
    const reply = (line: string) => socket.write(`${line}\r\n`);
    const plain = (b64: string) => {
      const [, user = '', pass = ''] = Buffer.from(b64, 'base64').toString('utf8').split('\u0000');
      auth = { user, pass };
      reply('235 2.7.0 Authentication successful');
    };
    const handle = (line: string) => {
      if (dataLines) {
        if (line === '.') {
          messages.push({ ...mail!, data: dataLines.join('\r\n') });
          mail = null;
          dataLines = null;
          reply(`250 2.0.0 OK queued as test-${messages.length}`);
        } else {
          dataLines.push(line.startsWith('..') ? line.slice(1) : line);
        }
        return;
      }
      if (awaitingAuth) {
        awaitingAuth = false;
        plain(line);
        return;
      }
      const [verb] = line.split(' ', 1);
      switch (verb.toUpperCase()) {
        case 'EHLO':
          socket.write('250-localhost greets you\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SMTPUTF8\r\n');
          break;
        case 'HELO':
          reply('250 localhost');
          break;
        case 'AUTH': {
          const [, mechanism, initial] = line.split(' ');
          if (mechanism?.toUpperCase() !== 'PLAIN') reply('504 5.5.4 Unrecognized authentication type');
          else if (initial) plain(initial);
          else {
            awaitingAuth = true;
            reply('334 ');
          }
          break;
        }
        case 'MAIL':
          mail = { auth, from: /<([^>]*)>/.exec(line)?.[1] ?? '', to: [], data: '' };
          reply('250 2.1.0 Ok');
          break;
        case 'RCPT': {
          const to = /<([^>]*)>/.exec(line)?.[1] ?? '';
          if (!mail) reply('503 5.5.1 MAIL first');
          else if (to.startsWith('reject')) reply('550 5.1.1 No such user here');
          else {
            mail.to.push(to);
            reply('250 2.1.5 Ok');
          }
          break;
        }
        case 'DATA':
          if (!mail || mail.to.length === 0) reply('503 5.5.1 RCPT first');
          else {
            dataLines = [];
            reply('354 End data with <CR><LF>.<CR><LF>');
          }
          break;
        case 'RSET':
          mail = null;
          reply('250 2.0.0 Ok');
          break;
        case 'NOOP':
          reply('250 2.0.0 Ok');
          break;
        case 'QUIT':
          reply('221 2.0.0 Bye');
          socket.end();
          break;
        default:
          reply('502 5.5.2 Command not recognized');
      }
    };
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      let end: number;
      while ((end = buffer.indexOf('\r\n')) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        handle(line);
      }
    });
    reply('220 localhost ESMTP test receiver');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    messages,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Decodes a quoted-printable body (soft line breaks and =XX escapes). */
export function decodeQuotedPrintable(text: string): string {
  const joined = text.replace(/=\r?\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < joined.length; i++) {
    const hex = joined.slice(i + 1, i + 3);
    if (joined[i] === '=' && /^[0-9A-F]{2}$/i.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(joined[i], 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

export interface ParsedMessage {
  /** Header names lower-cased; folded lines joined; encoded words decoded. */
  headers: Record<string, string>;
  text: string;
  html: string;
}

const decodeWords = (value: string): string =>
  value.replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=\s*/g, (_, _charset: string, encoding: string, body: string) =>
    encoding.toUpperCase() === 'B' ? Buffer.from(body, 'base64').toString('utf8') : decodeQuotedPrintable(body.replace(/_/g, ' ')),
  );

function splitHeaders(raw: string): { headers: Record<string, string>; body: string } {
  const normalized = raw.replace(/\r\n/g, '\n');
  const end = normalized.indexOf('\n\n');
  const head = end >= 0 ? normalized.slice(0, end) : normalized;
  const headers: Record<string, string> = {};
  for (const line of head.replace(/\n[ \t]+/g, ' ').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = decodeWords(line.slice(colon + 1).trim());
  }
  return { headers, body: end >= 0 ? normalized.slice(end + 2) : '' };
}

function decodeBody(headers: Record<string, string>, body: string): string {
  const encoding = (headers['content-transfer-encoding'] ?? '7bit').toLowerCase();
  if (encoding === 'quoted-printable') return decodeQuotedPrintable(body);
  if (encoding === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  return body;
}

/** Reads a whole message (an .eml file or what SMTP received): headers, text part, HTML part. */
export function parseMessage(raw: string): ParsedMessage {
  const { headers, body } = splitHeaders(raw);
  const result: ParsedMessage = { headers, text: '', html: '' };
  const boundary = /boundary="?([^";]+)"?/i.exec(headers['content-type'] ?? '')?.[1];
  const parts = boundary
    ? body.split(`--${boundary}`).slice(1, -1).map((part) => splitHeaders(part.replace(/^\n/, '')))
    : [{ headers, body }];
  for (const part of parts) {
    const type = (part.headers['content-type'] ?? 'text/plain').toLowerCase();
    if (type.startsWith('text/html')) result.html = decodeBody(part.headers, part.body);
    else if (type.startsWith('text/plain')) result.text = decodeBody(part.headers, part.body);
  }
  return result;
}
