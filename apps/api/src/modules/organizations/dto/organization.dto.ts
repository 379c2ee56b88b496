import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsDefined, IsIn, IsInt, IsOptional, IsString, Length, Max, Min, ValidateNested } from 'class-validator';
import { IsOmittable } from '@app/common';
import { PLANS, Plan } from '../plans';

export class OrganizationLimitsDto {
  @ApiPropertyOptional({ minimum: 1, description: 'null: back to the plan\'s default' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(1_000_000_000)
  requests_per_hour?: number;

  @ApiPropertyOptional({ minimum: 1, description: 'null: back to the plan\'s default' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  burst_per_second?: number;

  @ApiPropertyOptional({ minimum: 1, description: 'null: back to the plan\'s default' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(100_000)
  concurrent_requests?: number;

  @ApiPropertyOptional({ minimum: 1, description: 'Omit (or null) for unlimited' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(1_000_000_000)
  monthly_active_users?: number;
}

export class CreateOrganizationDto {
  @ApiProperty({ example: 'Acme' })
  @IsDefined()
  @IsString()
  @Length(1, 200)
  name!: string;

  @ApiProperty({ enum: PLANS })
  @IsDefined()
  @IsIn(PLANS)
  plan!: Plan;

  @ApiPropertyOptional({ type: OrganizationLimitsDto, description: 'Enterprise only: custom limits' })
  @IsOmittable()
  @ValidateNested()
  @Type(() => OrganizationLimitsDto)
  limits?: OrganizationLimitsDto;
}

export class UpdateOrganizationDto {
  @ApiPropertyOptional()
  @IsOmittable()
  @IsString()
  @Length(1, 200)
  name?: string;

  @ApiPropertyOptional({ enum: PLANS })
  @IsOmittable()
  @IsIn(PLANS)
  plan?: Plan;

  @ApiPropertyOptional({ type: OrganizationLimitsDto })
  @IsOmittable()
  @ValidateNested()
  @Type(() => OrganizationLimitsDto)
  limits?: OrganizationLimitsDto;
}
