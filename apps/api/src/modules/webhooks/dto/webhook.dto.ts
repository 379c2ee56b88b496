import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { OffsetPaginationQuery } from '@app/common';
import { ArrayMaxSize, ArrayMinSize, IsArray, IsBoolean, IsDefined, IsIn, IsString, Matches, MaxLength } from 'class-validator';
import { IsOmittable } from '@app/common';

export const WEBHOOK_EVENTS = ['user.created', 'user.updated', 'user.deleted', 'user.login', 'user.role_changed', '*'] as const;
/** whsec_ + base64 of 24 to 64 bytes. */
const SECRET = /^whsec_[A-Za-z0-9+/]{32,88}={0,2}$/;

export class CreateWebhookDto {
  @ApiProperty({ example: 'https://your-app.com/webhooks/users' })
  @IsDefined()
  @IsString()
  @MaxLength(2048)
  url!: string;

  @ApiProperty({ example: ['user.created', 'user.updated'], description: 'Among the five user events, or ["*"]' })
  @IsDefined()
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(6)
  @IsIn(WEBHOOK_EVENTS, { each: true })
  events!: string[];

  @ApiPropertyOptional({ description: 'whsec_ + base64 of 24-64 random bytes; generated when omitted. Shown in the creation response only.' })
  @IsOmittable()
  @IsString()
  @Matches(SECRET, { message: 'must be whsec_ followed by base64 of 24 to 64 bytes' })
  secret?: string;

  @ApiPropertyOptional({ default: true })
  @IsOmittable()
  @IsBoolean()
  active?: boolean;
}

export class UpdateWebhookDto {
  @ApiPropertyOptional()
  @IsOmittable()
  @IsString()
  @MaxLength(2048)
  url?: string;

  @ApiPropertyOptional()
  @IsOmittable()
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(6)
  @IsIn(WEBHOOK_EVENTS, { each: true })
  events?: string[];

  @ApiPropertyOptional({ description: 'Replaces the signing secret (never shown again)' })
  @IsOmittable()
  @IsString()
  @Matches(SECRET, { message: 'must be whsec_ followed by base64 of 24 to 64 bytes' })
  secret?: string;

  @ApiPropertyOptional({ description: 'true re-enables a disabled endpoint' })
  @IsOmittable()
  @IsBoolean()
  active?: boolean;
}

export class DeliveriesQuery extends OffsetPaginationQuery {}
