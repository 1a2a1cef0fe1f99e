/**
 * A batch job: send one newsletter to a list of recipients, 50 at a time, 5 at once. Run it with
 * worker-pool (see README.md):
 *
 *   jobmesh enqueue bulk-email newsletter --data '{"campaign":"launch","subject":"Hi {{name}}","body":"…","recipients":[{"email":"ada@example.com","name":"Ada"}]}'
 *
 * processInBatches persists each finished chunk, so a retry (or a replica taking over after a
 * crash) does not re-send chunks already done; one bad address is recorded in the result and
 * does not fail the other recipients. The sender here is a dry run that needs no mail server:
 * swap `dryRunSender` for one that talks to SMTP or a provider's API.
 */
import { createHash } from 'node:crypto';
import { defineProcessor, processInBatches, UnrecoverableError } from '@jobmesh/sdk';

export interface Recipient {
  email: string;
  /** Replaces {{name}} in the subject and body. @default the part of the address before '@' */
  name?: string;
}

/** The job's input. */
export interface NewsletterData {
  /** Identifies the send; part of every message id, so a re-send can be recognised. */
  campaign: string;
  /** May contain {{name}}. */
  subject: string;
  /** Plain text; may contain {{name}}. */
  body: string;
  recipients: Recipient[];
}

export interface Message {
  to: string;
  subject: string;
  text: string;
  /** Stable per (campaign, recipient): a provider that dedups on it turns a re-send into a no-op. */
  messageId: string;
}

/** Delivers one message; resolves with the id the provider accepted it under, rejects if it did not. */
export type Sender = (message: Message, signal: AbortSignal) => Promise<string>;

export interface NewsletterResult {
  campaign: string;
  total: number;
  sent: number;
  /** The recipients that were not sent to, and why. */
  failed: { email: string; error: string }[];
}

/** Recipients per persisted chunk, and messages of a chunk in flight at once. */
const CHUNK_SIZE = 50;
const SEND_CONCURRENCY = 5;
/** Larger lists belong in several jobs (or a flow): the job data must stay under the payload limit. */
const MAX_RECIPIENTS = 1000;

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/**
 * Accepts every well-formed address except those on the reserved `.invalid` domain, which it
 * refuses as a real server would refuse an unknown mailbox; sends nothing.
 */
export const dryRunSender: Sender = async (message) => {
  if (message.to.endsWith('.invalid')) throw new Error(`550 mailbox unavailable: ${message.to}`);
  return message.messageId;
};

function render(template: string, recipient: Recipient): string {
  return template.replaceAll('{{name}}', recipient.name ?? recipient.email.split('@')[0]!);
}

function checkInput(data: Partial<NewsletterData>): NewsletterData {
  const { campaign, subject, body, recipients } = data;
  if (typeof campaign !== 'string' || !campaign) throw new UnrecoverableError('data.campaign is required');
  if (typeof subject !== 'string' || typeof body !== 'string') throw new UnrecoverableError('data.subject and data.body must be strings');
  if (!Array.isArray(recipients) || recipients.length === 0) throw new UnrecoverableError('data.recipients must be a non-empty list');
  if (recipients.length > MAX_RECIPIENTS) throw new UnrecoverableError(`at most ${MAX_RECIPIENTS} recipients per job, got ${recipients.length}`);
  return { campaign, subject, body, recipients };
}

/** The newsletter processor with a sender of your choice; the module exports it with the dry run. */
export function newsletterProcessor(send: Sender) {
  return defineProcessor<Partial<NewsletterData>, NewsletterResult>({
    queue: 'bulk-email',
    name: 'newsletter',
    async process(job, ctx) {
      const { campaign, subject, body, recipients } = checkInput(job.data);
      const batch = await processInBatches(
        ctx,
        recipients,
        async (recipient) => {
          // A malformed address fails this recipient only; the batch goes on.
          if (typeof recipient?.email !== 'string' || !EMAIL.test(recipient.email)) throw new Error('not an email address');
          const messageId = `<${campaign}.${createHash('sha256').update(recipient.email.toLowerCase()).digest('hex').slice(0, 16)}@jobmesh.example>`;
          return send({ to: recipient.email, subject: render(subject, recipient), text: render(body, recipient), messageId }, ctx.signal);
        },
        { chunkSize: CHUNK_SIZE, concurrency: SEND_CONCURRENCY },
      );
      if (batch.failed.length) await ctx.log(`${batch.failed.length} of ${batch.total} recipients were not sent to`);
      return {
        campaign,
        total: batch.total,
        sent: batch.succeeded,
        failed: batch.failed.map((f) => ({ email: String(recipients[f.index]?.email ?? `#${f.index}`), error: f.error })),
      };
    },
  });
}

export const newsletter = newsletterProcessor(dryRunSender);
