import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@app/config';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createTransport, Transporter } from 'nodemailer';

export type MailTemplate = 'welcome' | 'verification' | 'password_reset';

/**
 * Sends transactional email with nodemailer over SMTP_URL. Without SMTP_URL each message is written
 * as an .eml file under DATA_DIR/mail (and logged), so a zero-configuration install still works.
 * Templates are plain text files (`Subject:` line, blank line, body) with {{placeholders}}, read from
 * MAIL_TEMPLATES_DIR (default config/mail) so operators can change them.
 */
@Injectable()
export class MailerService implements OnApplicationShutdown {
  private readonly logger = new Logger(MailerService.name);
  private readonly transport: Transporter;
  private readonly toFiles: boolean;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    this.toFiles = !config.smtpUrl;
    this.transport = config.smtpUrl
      ? createTransport(config.smtpUrl)
      : createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  }

  async send(template: MailTemplate, to: string, variables: Record<string, string>): Promise<void> {
    const { subject, text } = await this.render(template, { product_name: 'User Management', email: to, ...variables });
    const info = (await this.transport.sendMail({ from: this.config.mailFrom, to, subject, text })) as { message?: Buffer; messageId?: string };
    if (this.toFiles && info.message) {
      const dir = join(this.config.dataDir, 'mail');
      await mkdir(dir, { recursive: true });
      const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${template}-${Math.random().toString(36).slice(2, 8)}.eml`);
      await writeFile(file, info.message, { mode: 0o600 });
      this.logger.log({ template, file }, 'No SMTP_URL: email written to a file');
    }
  }

  private async render(template: MailTemplate, variables: Record<string, string>): Promise<{ subject: string; text: string }> {
    const source = await readFile(join(this.config.mailTemplatesDir, `${template}.txt`), 'utf8');
    const filled = source.replace(/\{\{\s*([a-z_]+)\s*\}\}/g, (_, name: string) => variables[name] ?? '');
    const [head, ...body] = filled.split(/\r?\n\r?\n/);
    const subject = /^Subject:\s*(.*)$/m.exec(head ?? '')?.[1] ?? 'Message';
    return { subject, text: body.join('\n\n') };
  }

  onApplicationShutdown(): void {
    this.transport.close();
  }
}
