import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ApiKeysModule } from '../api-keys/api-keys.module';
import { OrganizationEntity } from './entities/organization.entity';
import { OrganizationsController } from './organizations.controller';
import { OrganizationsRepository } from './organizations.repository';
import { OrganizationsService } from './organizations.service';
import { PlanFeatureGuard } from './plan-feature.guard';
import { RateLimitGuard } from './rate-limit.guard';

@Module({
  imports: [TypeOrmModule.forFeature([OrganizationEntity]), ApiKeysModule],
  controllers: [OrganizationsController],
  providers: [OrganizationsRepository, OrganizationsService, PlanFeatureGuard, RateLimitGuard],
  exports: [OrganizationsService, PlanFeatureGuard, RateLimitGuard],
})
export class OrganizationsModule {}
