import { Module } from '@nestjs/common';
import { DenylistModule } from '../auth/denylist/denylist.module';
import { UsersModule } from '../users/users.module';
import { RoleManagementService } from './role-management.service';
import { RolesController } from './roles.controller';
import { RolesModule } from './roles.module';

/** Role CRUD sits apart from RolesModule because it needs the users (holders) and users need roles. */
@Module({
  imports: [RolesModule, UsersModule, DenylistModule],
  controllers: [RolesController],
  providers: [RoleManagementService],
})
export class RoleManagementModule {}
