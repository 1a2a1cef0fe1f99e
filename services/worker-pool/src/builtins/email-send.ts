import { UnrecoverableError } from '@jobmesh/core';
import { defineProcessor, type ProcessorDefinition } from '@jobmesh/sdk';
import type { createTransport } from 'nodemailer';
import { z } from 'zod';
import { parseJobData } from './job-data';

export interface EmailSettings {
  /** smtp:// or smtps:// URL, credentials included. Unset: every email.send job fails, saying so. */
  smtpUrl?: string;
  /** Sender when a job gives none. */
  smtpFrom?: string;
}

const nonEmpty = z.string().trim().min(1, 'must not be empty');

/** The job data of `email.send`. Unknown fields are errors, so a misspelt `txt` does not pass silently. */
const emailSendData = z
  .strictObject({
    to: z.union([nonEmpty, z.array(nonEmpty).min(1, 'must list at least one address')], {
      error: (issue) => (issue.input === undefined ? 'is required' : 'must be an address or a list of addresses'),
    }),
    subject: z.string(),
    text: z.string().optional(),
    html: z.string().optional(),
    from: nonEmpty.optional(),
  })
  .refine((d) => d.text !== undefined || d.html !== undefined, { message: 'needs text or html (or both)', path: ['text'] });

export type EmailSendData = z.input<typeof emailSendData>;

export interface EmailSendResult {
  messageId: string;
  /** Recipients the server accepted. */
  accepted: string[];
  /** Recipients the server refused while accepting others. */
  rejected: string[];
}

/** The fields nodemailer sets on its errors that decide retrying. */
interface SmtpError extends Error {
  responseCode?: number;
}

/**
 * `email.send`: sends one message over SMTP. A permanent SMTP refusal (5xx) fails the job at once;
 * connection problems and 4xx replies are retried.
 */
export function emailSendProcessor(settings: EmailSettings): ProcessorDefinition {
  // One transport per processor, made on first use: a worker-pool without SMTP settings starts
  // fine, and fails only the email jobs. Not pooled, so no connection outlives a send and
  // nothing needs closing at shutdown.
  let transport: ReturnType<typeof createTransport> | undefined;
  return defineProcessor({
    queue: '*',
    name: 'email.send',
    async process(job, ctx): Promise<EmailSendResult> {
      if (!settings.smtpUrl) {
        throw new UnrecoverableError('email.send: no SMTP server is configured; set JOBMESH_SMTP_URL or smtp.url in the config file');
      }
      const data = parseJobData('email.send', emailSendData, job.data);
      const from = data.from ?? settings.smtpFrom;
      if (!from) {
        throw new UnrecoverableError('email.send: invalid job data: from: is required when no default sender is set (JOBMESH_SMTP_FROM or smtp.from)');
      }
      // nodemailer is loaded here, on the first email: most worker-pools never send one.
      transport ??= (require('nodemailer') as typeof import('nodemailer')).createTransport(settings.smtpUrl);
      try {
        const info = await transport.sendMail({ from, to: data.to, subject: data.subject, text: data.text, html: data.html, signal: ctx.signal });
        return { messageId: info.messageId, accepted: info.accepted, rejected: info.rejected };
      } catch (raw) {
        if (ctx.signal.aborted) throw ctx.signal.reason;
        const err = raw as SmtpError;
        const reason = `email.send: ${err.message}`;
        // RFC 5321: 5yz is a permanent refusal, except 503 (bad sequence of commands), which is
        // about the session, not the message, and may pass on a new connection.
        if (err.responseCode !== undefined && err.responseCode >= 500 && err.responseCode !== 503) {
          throw new UnrecoverableError(reason, { cause: err });
        }
        throw new Error(reason, { cause: err });
      }
    },
  });
}
