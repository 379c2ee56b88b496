import { ApiProperty, ApiPropertyOptional, PickType } from '@nestjs/swagger';
import { IsOmittable, MaxJsonSize, OffsetPaginationQuery, toBoolean } from '@app/common';
import { Transform, Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsBoolean,
  IsDefined,
  IsEmail,
  IsIn,
  IsObject,
  IsOptional,
  IsString,
  Length,
  MaxLength,
  ValidateNested,
} from 'class-validator';
import { USER_STATUSES } from '../entities/user.entity';

const trim = ({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value);

export class CreateUserDto {
  @ApiProperty({ example: 'newuser@company.com', description: 'Unique per organization, case-insensitively; stored trimmed' })
  @IsDefined()
  @Transform(trim)
  @IsEmail({}, { message: 'Invalid email format', context: { code: 'INVALID_EMAIL_FORMAT' } })
  @MaxLength(254)
  email!: string;

  @ApiProperty({ example: 'Alex', minLength: 1, maxLength: 100 })
  @IsDefined()
  @IsString()
  @Length(1, 100)
  first_name!: string;

  @ApiProperty({ example: 'Johnson', minLength: 1, maxLength: 100 })
  @IsDefined()
  @IsString()
  @Length(1, 100)
  last_name!: string;

  @ApiPropertyOptional({ example: 'user', description: 'Primary role: a role name or id of the organization (default `user`)' })
  @IsOmittable()
  @IsString()
  @Length(1, 100)
  role?: string;

  @ApiPropertyOptional({ description: 'Write-only; hashed with argon2id', minLength: 8, maxLength: 256 })
  @IsOmittable()
  @IsString()
  @Length(8, 256)
  password?: string;

  @ApiPropertyOptional()
  @IsOmittable()
  @IsBoolean()
  send_welcome_email?: boolean;

  @ApiPropertyOptional({ example: { department: 'marketing' }, description: 'A JSON object of at most 16 KiB' })
  @IsOmittable()
  @IsObject()
  @MaxJsonSize(16 * 1024)
  metadata?: Record<string, unknown>;
}

export class UpdateUserDto {
  @ApiPropertyOptional({ minLength: 1, maxLength: 100 })
  @IsOmittable()
  @IsString()
  @Length(1, 100)
  first_name?: string;

  @ApiPropertyOptional({ minLength: 1, maxLength: 100 })
  @IsOmittable()
  @IsString()
  @Length(1, 100)
  last_name?: string;

  @ApiPropertyOptional({ description: 'Primary role (name or id); publishes user.role_changed' })
  @IsOmittable()
  @IsString()
  @Length(1, 100)
  role?: string;

  @ApiPropertyOptional({ enum: USER_STATUSES })
  @IsOmittable()
  @IsIn(USER_STATUSES)
  status?: (typeof USER_STATUSES)[number];

  @ApiPropertyOptional({ description: 'Replaces the whole metadata object (≤ 16 KiB)' })
  @IsOmittable()
  @IsObject()
  @MaxJsonSize(16 * 1024)
  metadata?: Record<string, unknown>;
}

/** limit 1-100 (default 25) and offset come from the shared offset pagination query. */
export class ListUsersQuery extends OffsetPaginationQuery {
  @ApiPropertyOptional({ example: 'admin' })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  role?: string;

  @ApiPropertyOptional({ enum: [...USER_STATUSES, 'deleted'] })
  @IsOptional()
  @IsIn([...USER_STATUSES, 'deleted'])
  status?: string;

  @ApiPropertyOptional({
    example: 'created_at:desc',
    description:
      'field:asc|desc (default asc), or several comma-separated, over created_at, updated_at, last_login, login_count, email, first_name, last_name. ' +
      'Ties are broken by id in the direction of the last key. A user who never signed in has the oldest last_login. ' +
      'A sort by one field reads an index in its order, so a cursor page costs about the same at any depth (an offset page also reads the rows it skips); ' +
      'with several fields, the first one does, and rows that tie on it are sorted.',
  })
  @IsOptional()
  @IsString()
  @MaxLength(100)
  sort?: string;

  @ApiPropertyOptional({ description: 'Case-insensitive substring of name or email' })
  @IsOptional()
  @IsString()
  @MaxLength(200)
  search?: string;

  @ApiPropertyOptional({ description: 'Switches to keyset mode: pass pagination.next_cursor of the previous page' })
  @IsOptional()
  @IsString() // any length: one that is no cursor of ours (too long included) is 400 INVALID_CURSOR
  cursor?: string;
}

/** `limit` 1-100 (default 25) from the shared pagination query; search pages by cursor only. */
export class SearchUsersQuery extends PickType(OffsetPaginationQuery, ['limit'] as const) {
  @ApiPropertyOptional({ description: 'Every word must match name or email' })
  @IsOptional()
  @IsString()
  @MaxLength(200)
  q?: string;

  @ApiPropertyOptional({ description:
      'JSON object of field: value or field: {operator: value}; operators eq ne gt gte lt lte in contains; dates as YYYY-MM-DD (the whole UTC day) or RFC 3339 with seconds and an offset',
    example: '{"created_at":{"gte":"2024-12-21"},"role":"admin"}' })
  @IsOptional()
  @IsString()
  @MaxLength(8192)
  filters?: string;

  @ApiPropertyOptional({
    example: '["last_login:desc","created_at:asc"]',
    description: 'JSON array or comma list of field:asc|desc, 1 to 5 keys, over the same fields as GET /users (ties broken by id in the last key’s direction)',
  })
  @IsOptional()
  @IsString()
  @MaxLength(500)
  sort?: string;

  @ApiPropertyOptional({ example: '["id","email","roles"]', description: 'JSON array or comma list; id is always returned' })
  @IsOptional()
  @IsString()
  @MaxLength(500)
  fields?: string;

  @ApiPropertyOptional()
  @IsOptional()
  @IsString() // any length: one that is no cursor of ours (too long included) is 400 INVALID_CURSOR
  cursor?: string;
}

export class GetUserQuery {
  @ApiPropertyOptional({ example: 'roles,permissions,preferences', description: 'roles and permissions are always included; preferences on request' })
  @IsOptional()
  @IsString()
  @MaxLength(200)
  include?: string;

  @ApiPropertyOptional()
  @IsOptional()
  @Transform(toBoolean)
  @IsBoolean()
  include_deleted?: boolean;
}

export class DeleteUserQuery {
  @ApiPropertyOptional({ description: 'Keep the record with status deleted (restorable)' })
  @IsOptional()
  @Transform(toBoolean)
  @IsBoolean()
  soft_delete?: boolean;
}

export class BulkOptionsDto {
  @ApiPropertyOptional()
  @IsOmittable()
  @IsBoolean()
  send_welcome_emails?: boolean;

  @ApiPropertyOptional({ description: 'true: all or nothing' })
  @IsOmittable()
  @IsBoolean()
  fail_on_error?: boolean;
}

export class BulkCreateUsersDto {
  /** Each user is validated on its own (CONTRACT §8): AppValidationPipe leaves their strings to the service. */
  static readonly itemsCheckedOneByOne = 'users';

  @ApiProperty({ type: [CreateUserDto], minItems: 1, maxItems: 100 })
  @IsDefined()
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(100)
  users!: unknown[];

  @ApiPropertyOptional({ type: BulkOptionsDto })
  @IsOmittable()
  @IsObject()
  @ValidateNested()
  @Type(() => BulkOptionsDto)
  options?: BulkOptionsDto;
}

export class AssignRolesDto {
  @ApiProperty({ example: ['moderator'], description: 'Role names or ids' })
  @IsDefined()
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(50)
  @IsString({ each: true })
  roles!: string[];
}

export class UpdateOwnProfileDto {
  @ApiPropertyOptional({ minLength: 1, maxLength: 100 })
  @IsOmittable()
  @IsString()
  @Length(1, 100)
  first_name?: string;

  @ApiPropertyOptional({ minLength: 1, maxLength: 100 })
  @IsOmittable()
  @IsString()
  @Length(1, 100)
  last_name?: string;

  @ApiPropertyOptional()
  @IsOmittable()
  @IsObject()
  @MaxJsonSize(16 * 1024)
  metadata?: Record<string, unknown>;

  @ApiPropertyOptional()
  @IsOmittable()
  @IsObject()
  @MaxJsonSize(16 * 1024)
  preferences?: Record<string, unknown>;
}
