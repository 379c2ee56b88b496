import { Module } from '@nestjs/common';
import { MailListener } from './mail.listener';
import { MailerService } from './mailer.service';

@Module({ providers: [MailerService, MailListener], exports: [MailerService] })
export class MailModule {}
