import { Injectable } from '@nestjs/common';
import { OnEvent } from '@nestjs/event-emitter';
import { MasterKeyService } from '@app/config';
import { DispatchedEvent } from '@app/events';
import { MailerService } from './mailer.service';

export const MAIL_LINK_PURPOSE = 'mail-link';

/**
 * Mail goes out from the outbox: a send that fails is retried with the event (at least once).
 * The welcome message follows `user.created` with send_welcome_email; the others `email.requested`.
 */
@Injectable()
export class MailListener {
  constructor(
    private readonly mailer: MailerService,
    private readonly masterKey: MasterKeyService,
  ) {}

  @OnEvent('user.created', { promisify: true, suppressErrors: false })
  async welcome({ event }: DispatchedEvent<'user.created'>): Promise<void> {
    if (!event.data.send_welcome_email) return;
    await this.mailer.send('welcome', event.data.user.email, { first_name: event.data.user.first_name });
  }

  @OnEvent('email.requested', { promisify: true, suppressErrors: false })
  async requested({ event }: DispatchedEvent<'email.requested'>): Promise<void> {
    const { template, to, first_name, sealed_link } = event.data;
    await this.mailer.send(template, to, { first_name, link: this.masterKey.decrypt(MAIL_LINK_PURPOSE, sealed_link) });
  }
}
